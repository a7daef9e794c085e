"""Metered requests to the simulator services on lab hosts, through their front door.

The demo sends them before it collects, so its usage report shows figures an operator
can check against what was sent, not a page of zeros.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from airlift import lab, podman
from airlift.paths import lab_dir

SIM_PREFIX = "sim-"
FRONTDOOR_PORT_OFFSET = 10000
CA_FILE = "/etc/airlift/frontdoor/tls/ca.crt"
DOCUMENTS_PER_REQUEST = 3

# Runs on the lab host with its python3: HTTPS to localhost, verified against the lab CA.
SENDER = """\
import json, ssl, sys, urllib.request
plan, ca = json.loads(sys.argv[1]), sys.argv[2]
context = ssl.create_default_context(cafile=ca)
for item in plan:
    for _ in range(item["requests"]):
        request = urllib.request.Request(
            f"https://localhost:{item['port']}{item['path']}",
            data=json.dumps(item["body"]).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=15, context=context) as answer:
            item["metered"] = item.get("metered", 0) + json.load(answer)["metered"]
print(json.dumps(plan))
"""


class TrafficError(RuntimeError):
    """A request failed: the demo must not collect as if it had been sent."""


@dataclass
class Request:
    """Requests to one service, and how much they should meter in all."""

    service: str
    meter: str
    port: int
    path: str
    body: dict[str, Any]
    requests: int
    expected: int


def demo_services() -> list[dict[str, Any]]:
    """The services `airlift demo` rolls out (lab/frontdoor.yml)."""
    return yaml.safe_load((lab_dir() / "frontdoor.yml").read_text())["airlift_services"]


def plan(services: Iterable[Mapping[str, Any]], requests: int = 2,
         frontdoor: bool = True) -> list[Request]:
    """Requests for each simulator service in an `airlift_services` list.

    Services whose catalog entry is not a simulator are left out: their API is not ours
    to call.
    """
    types = lab.simulator_services()
    port_offset = FRONTDOOR_PORT_OFFSET if frontdoor else 0
    planned = []
    for service in services:
        kind = str(service["catalog"]).removeprefix(SIM_PREFIX)
        if not str(service["catalog"]).startswith(SIM_PREFIX) or kind not in types:
            continue
        spec = types[kind]
        if spec["unit"] == "documents":
            body: dict[str, Any] = {"documents": ["airlift demo"] * DOCUMENTS_PER_REQUEST}
            per_request = DOCUMENTS_PER_REQUEST
        elif spec["unit"] == "request":
            body, per_request = {"url": "airlift-demo"}, 1
        else:
            # Audio seconds are metered from the body's bytes: one short second each.
            body, per_request = {"audio": "0" * 100}, 1
        planned.append(Request(service=service["name"], meter=str(spec["meter"]),
                               port=int(service["port"]) + port_offset, path=str(spec["path"]),
                               body=body, requests=requests, expected=per_request * requests))
    return planned


def send(host: str, requests: list[Request]) -> dict[str, int]:
    """Send the planned requests from inside `host`; what each service metered, by name.

    Any answer but 200 raises: a partial send would make the report's figures misleading.
    """
    payload = json.dumps([asdict(item) for item in requests])
    try:
        out = podman.run(["exec", host, "python3", "-c", SENDER, payload, CA_FILE]).stdout
    except podman.PodmanError as error:
        # The sender's traceback ends with the one line that says what answered.
        reason = str(error).strip().splitlines()[-1]
        raise TrafficError(f"{host}: requests through the front door failed: {reason}") from error
    return {item["service"]: int(item.get("metered", 0)) for item in json.loads(out)}
