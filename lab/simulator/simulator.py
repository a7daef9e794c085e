#!/usr/bin/env python3
"""Lab stand-in for an Azure AI disconnected container (test equipment, stdlib only).

It honours the published container contract so that airlift can be tested end to end
without the licensed images:
  * settings as `Key=Value` arguments or environment variables, `:` or `__` as the
    section separator, keys case-insensitive (arguments win over environment);
  * `Eula=accept` always; `DownloadLicense=True` with `Billing` and `ApiKey` writes a
    license for this service type and image version into `Mounts:License` and exits;
  * a normal run refuses to start without a valid, unexpired, matching license or
    without a writable `Mounts:Output`; every refusal is one line on stderr, exit 1;
  * `/ready` (503 during warm-up), `/status`, `/swagger`, a metered inference endpoint
    that appends usage records durably to Output, and `/records/usage-logs/[MM/YYYY]`
    computed from those records, so totals survive restarts;
  * a type that needs another service (Document Intelligence custom template needs
    layout through `AzureCognitiveServiceLayoutHost`) refuses to start without that
    setting, is not ready while the other is not, and asks the other on every request.

The service type (meter, path, warm-up) comes from AIRLIFT_SIM_* variables baked into
each image. The license HMAC key is a constant: it models "only this container type and
image accept this file", not secrecy.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import math
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LICENSE_FORMAT = "airlift-sim-license/1"
LICENSE_HMAC_KEY = b"airlift-simulator-license-v1"
RECORDS_PREFIX = "usage-"
DEFAULT_PORT = 5000


class Refusal(Exception):
    """The container refuses to run; the message is the one line it prints."""


def normalise_key(key: str) -> str:
    return key.replace("__", ":").lower()


def read_settings(argv: list[str], environ: dict[str, str]) -> dict[str, str]:
    """Merge environment and `Key=Value` arguments the way ASP.NET configuration does."""
    settings = {normalise_key(k): v for k, v in environ.items()}
    for arg in argv:
        if "=" not in arg:
            raise Refusal(f"unrecognised argument {arg!r}: settings are Key=Value")
        key, value = arg.split("=", 1)
        settings[normalise_key(key)] = value
    return settings


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"true", "1", "yes"}


class Service:
    """The service type this image plays, from the variables baked into it."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.name = environ.get("AIRLIFT_SIM_SERVICE", "sentiment")
        self.api_type = environ.get("AIRLIFT_SIM_API_TYPE", "TextAnalytics")
        self.path = environ.get("AIRLIFT_SIM_PATH", "/text/analytics/v3.1/sentiment")
        self.meter = environ.get("AIRLIFT_SIM_METER", "Sentiment.TextRecords")
        self.unit = environ.get("AIRLIFT_SIM_UNIT", "documents")
        self.version = environ.get("AIRLIFT_SIM_IMAGE_VERSION", "0")
        self.warmup = float(environ.get("AIRLIFT_SIM_WARMUP_SECONDS", "2"))
        # The setting naming the service this one needs ('' = stands alone).
        self.requires = environ.get("AIRLIFT_SIM_REQUIRES", "")

    def quantity(self, body: bytes) -> int:
        """How much one request meters, by the unit of this service type."""
        if self.unit == "request":
            return 1
        if self.unit == "audio_seconds":
            return max(1, math.ceil(len(body) / 32000))
        try:
            documents = json.loads(body or b"{}").get("documents", [])
        except (ValueError, AttributeError) as exc:
            raise ValueError("body must be JSON with a 'documents' list") from exc
        if not isinstance(documents, list) or not documents:
            raise ValueError("body must be JSON with a non-empty 'documents' list")
        return len(documents)


# -- licenses -------------------------------------------------------------------------


def sign_license(payload: dict[str, str]) -> str:
    body = json.dumps(payload, sort_keys=True).encode()
    return base64.b64encode(hmac.new(LICENSE_HMAC_KEY, body, hashlib.sha256).digest()).decode()


def license_file(license_dir: Path, service: Service) -> Path:
    return license_dir / f"{service.name}.license"


def download_license(settings: dict[str, str], service: Service) -> Path:
    """Model the connected `DownloadLicense=True` run: needs Billing and ApiKey."""
    billing = settings.get("billing", "")
    if not billing.startswith("https://"):
        raise Refusal("DownloadLicense=True needs Billing=<https endpoint of your resource>")
    if not settings.get("apikey"):
        raise Refusal("DownloadLicense=True needs ApiKey=<key of your resource>")
    license_dir = Path(settings.get("mounts:license", ""))
    if not settings.get("mounts:license") or not license_dir.is_dir():
        raise Refusal(
            f"The provided license path was not found: '{license_dir}'. "
            "Mount a directory and pass Mounts:License=<container path>"
        )
    days = int(settings.get("sim:licensedays", "365"))
    issued = dt.datetime.now(dt.UTC).replace(microsecond=0)
    payload = {
        "format": LICENSE_FORMAT,
        "service": service.name,
        "imageVersion": service.version,
        "issued": issued.isoformat(),
        "expires": (issued + dt.timedelta(days=days)).isoformat(),
        "resource": billing.split("//", 1)[1].split("/", 1)[0],
    }
    document = {**payload, "signature": sign_license(payload)}
    target = license_file(license_dir, service)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(temporary, target)
    return target


def check_license(settings: dict[str, str], service: Service) -> dict[str, str]:
    """Refuse unless the license mount holds a genuine, unexpired license for us."""
    raw = settings.get("mounts:license")
    if not raw:
        raise Refusal("No license mount: pass Mounts:License=<container path of the license>")
    license_dir = Path(raw)
    if not license_dir.is_dir():
        raise Refusal(f"The provided license path was not found: '{license_dir}'")
    path = license_file(license_dir, service)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise Refusal(f"No license for service '{service.name}' in '{license_dir}'") from exc
    except (OSError, ValueError) as exc:
        raise Refusal(f"The license file '{path}' is unreadable or corrupt: {exc}") from exc
    signature = document.pop("signature", "")
    if not hmac.compare_digest(signature, sign_license(document)):
        raise Refusal(f"The license file '{path}' is not valid for this container")
    if document.get("service") != service.name:
        raise Refusal(
            f"The license is for service '{document.get('service')}', not '{service.name}'"
        )
    if document.get("imageVersion") != service.version:
        raise Refusal(
            f"The license was issued for image version '{document.get('imageVersion')}', "
            f"this image is '{service.version}': download a new license for it"
        )
    expires = dt.datetime.fromisoformat(document["expires"])
    if expires <= dt.datetime.now(dt.UTC):
        raise Refusal(f"The license expired on {expires.date()}: download a new one")
    return document


# -- usage records --------------------------------------------------------------------


class UsageLedger:
    """Append-only usage records in the Output mount, one JSON line each, fsynced.

    A file per month keeps monthly queries cheap. Appends take an exclusive flock so
    that concurrent requests (and several processes on one mount) lose nothing; a torn
    last line (no newline) is ignored when reading.
    """

    def __init__(self, output_dir: Path, service: Service) -> None:
        self.output_dir = output_dir
        self.service = service
        self._lock = threading.Lock()

    def append(self, quantity: int) -> None:
        now = dt.datetime.now(dt.UTC)
        record = {
            "id": uuid.uuid4().hex,
            "time": now.isoformat(),
            "service": self.service.name,
            "meter": self.service.meter,
            "quantity": quantity,
        }
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        path = self.output_dir / f"{RECORDS_PREFIX}{now:%Y-%m}.jsonl"
        with self._lock:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # A record torn by a crash has no newline: end it, so it stays on its own
                # line (ignored when read) instead of swallowing this one.
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)

    def totals(self, month: int | None = None, year: int | None = None) -> dict[str, float]:
        pattern = f"{RECORDS_PREFIX}{year:04d}-{month:02d}.jsonl" if month else "usage-*.jsonl"
        totals: dict[str, float] = {}
        for path in sorted(self.output_dir.glob(pattern)):
            with path.open("rb") as handle:
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        continue
                    try:
                        record = json.loads(raw)
                    except ValueError:
                        continue  # a record torn by a crash
                    if record.get("service") != self.service.name:
                        continue
                    totals[record["meter"]] = totals.get(record["meter"], 0) + record["quantity"]
        return totals

    def report(self, month: int | None = None, year: int | None = None) -> dict[str, object]:
        meters = [
            {"name": name, "quantity": quantity}
            for name, quantity in sorted(self.totals(month, year).items())
        ]
        if not meters:
            meters = [{"name": self.service.meter, "quantity": 0}]
        return {"apiType": self.service.api_type, "serviceName": self.service.name,
                "meters": meters}


def check_upstream(settings: dict[str, str], service: Service) -> str:
    """The base URL of the service this one needs, or '' when it stands alone."""
    if not service.requires:
        return ""
    value = settings.get(service.requires.lower(), "").rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise Refusal(f"{service.requires} must be the URL of the service {service.name} "
                      f"needs, like {service.requires}=http://layout:5000 (got {value!r})")
    return value


def upstream_ready(url: str) -> bool:
    """Whether the needed service answers /ready now (asked on every call: no cache)."""
    try:
        with urllib.request.urlopen(f"{url}/ready", timeout=3) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def check_output(settings: dict[str, str]) -> Path:
    raw = settings.get("mounts:output")
    if not raw:
        raise Refusal(
            "An output mount must be specified so that usage records can be written: "
            "pass Mounts:Output=<container path>"
        )
    output = Path(raw)
    if not output.is_dir():
        raise Refusal(f"The provided output path was not found: '{output}'")
    if not os.access(output, os.W_OK):
        raise Refusal(f"The output path '{output}' is not writable by uid {os.getuid()}")
    return output


# -- HTTP -----------------------------------------------------------------------------


def swagger(service: Service) -> dict[str, object]:
    return {
        "openapi": "3.0.1",
        "info": {"title": f"{service.name} (airlift simulator)", "version": service.version},
        "paths": {
            "/ready": {"get": {"summary": "Ready for queries"}},
            "/status": {"get": {"summary": "Container status"}},
            "/records/usage-logs/": {"get": {"summary": "All usage in the Output mount"}},
            "/records/usage-logs/{month}/{year}": {"get": {"summary": "Usage of a month"}},
            service.path: {"post": {"summary": f"Inference, metered as {service.meter}"}},
        },
    }


class Handler(BaseHTTPRequestHandler):
    server: SimulatorServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def send_json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        sim = self.server
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/ready":
            if not sim.is_ready():
                self.send_json(503, {"status": "warming up"})
            elif sim.upstream and not upstream_ready(sim.upstream):
                self.send_json(503, {"status": f"waiting for {sim.upstream}"})
            else:
                self.send_json(200, {"status": "ready"})
        elif path == "/status":
            self.send_json(200, {
                "service": sim.service.name,
                "imageVersion": sim.service.version,
                "apiStatus": "Valid",
                "apiStatusMessage": "Disconnected license is valid.",
                "licenseExpires": sim.license["expires"],
                **({"dependsOn": sim.upstream} if sim.upstream else {}),
            })
        elif path == "/swagger":
            self.send_json(200, swagger(sim.service))
        elif path == "/records/usage-logs":
            self.send_json(200, sim.ledger.report())
        elif path.startswith("/records/usage-logs/"):
            parts = path.split("/")[3:]
            try:
                month, year = int(parts[0]), int(parts[1])
                if len(parts) != 2 or not 1 <= month <= 12:
                    raise ValueError
            except (ValueError, IndexError):
                self.send_json(400, {"error": "use /records/usage-logs/{MM}/{YYYY}"})
                return
            self.send_json(200, sim.ledger.report(month, year))
        else:
            self.send_json(404, {"error": f"no such path {path}"})

    def do_POST(self) -> None:
        sim = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?", 1)[0].rstrip("/") != sim.service.path.rstrip("/"):
            self.send_json(404, {"error": f"POST {sim.service.path} for inference"})
            return
        if not sim.is_ready():
            self.send_json(503, {"error": "warming up"})
            return
        try:
            quantity = sim.service.quantity(body)
        except ValueError as exc:
            self.send_json(400, {"error": str(exc)})
            return
        if sim.upstream and not upstream_ready(sim.upstream):
            self.send_json(502, {"error": f"{sim.service.requires} {sim.upstream} does not "
                                          "answer /ready"})
            return
        sim.ledger.append(quantity)
        answer: dict[str, object] = {"service": sim.service.name, "metered": quantity}
        if sim.upstream:
            answer["upstream"] = sim.upstream
        self.send_json(200, answer)


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, service: Service, license_doc: dict[str, str],
                 ledger: UsageLedger, warmup: float, upstream: str = "") -> None:
        super().__init__(("0.0.0.0", port), Handler)
        self.upstream = upstream
        self.service = service
        self.license = license_doc
        self.ledger = ledger
        self.ready_at = time.monotonic() + warmup

    def is_ready(self) -> bool:
        return time.monotonic() >= self.ready_at


def main(argv: list[str], environ: dict[str, str]) -> int:
    service = Service(environ)
    try:
        settings = read_settings(argv, environ)
        if settings.get("eula", "").lower() != "accept":
            raise Refusal("The EULA must be accepted: pass Eula=accept")
        if truthy(settings.get("downloadlicense")):
            path = download_license(settings, service)
            print(f"License for {service.name} {service.version} written to {path}")
            return 0
        license_doc = check_license(settings, service)
        ledger = UsageLedger(check_output(settings), service)
        upstream = check_upstream(settings, service)
        warmup = float(settings.get("sim:warmupseconds", service.warmup))
        port = int(settings.get("sim:port", DEFAULT_PORT))
        server = SimulatorServer(port, service, license_doc, ledger, warmup, upstream)
    except Refusal as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{service.name} {service.version} listening on :{port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main(sys.argv[1:], dict(os.environ)))
