"""The simulator image honours the disconnected-container contract (real podman runs)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port

from airlift import lab, podman

pytestmark = pytest.mark.lab

BILLING = "Billing=https://lab.cognitiveservices.azure.com"


def run_once(image: str, *args: str, mounts: dict[Path, str] | None = None,
             env: dict[str, str] | None = None) -> podman.subprocess.CompletedProcess:
    cmd = ["run", "--rm", "--network", "none"]
    for host_path, target in (mounts or {}).items():
        cmd += ["-v", f"{host_path}:{target}:Z"]
    for key, value in (env or {}).items():
        cmd += ["-e", f"{key}={value}"]
    return podman.run([*cmd, image, *args], check=False)


def refused(proc, fragment: str) -> None:
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0]


@pytest.fixture
def license_dir(tmp_path, sim_images):
    path = tmp_path / "license"
    path.mkdir()
    proc = run_once(sim_images["sentiment"], "Eula=accept", BILLING, "ApiKey=k",
                    "DownloadLicense=True", "Mounts:License=/license",
                    mounts={path: "/license"})
    assert proc.returncode == 0, proc.stderr
    return path


def test_eula_is_required(sim_images):
    refused(run_once(sim_images["sentiment"]), "Eula=accept")


def test_download_license_needs_billing_and_api_key(tmp_path, sim_images):
    refused(run_once(sim_images["read"], "Eula=accept", "DownloadLicense=True", "ApiKey=k",
                     "Mounts:License=/license", mounts={tmp_path: "/license"}), "Billing")
    refused(run_once(sim_images["read"], "Eula=accept", "DownloadLicense=True", BILLING,
                     "Mounts:License=/license", mounts={tmp_path: "/license"}), "ApiKey")


def test_download_license_through_environment_variables(tmp_path, sim_images):
    proc = run_once(sim_images["read"], mounts={tmp_path: "/license"},
                    env={"EULA": "accept", "billing": "https://x.example", "APIKEY": "k",
                         "DownloadLicense": "True", "Mounts__License": "/license"})
    assert proc.returncode == 0, proc.stderr
    license_doc = json.loads((tmp_path / "read.license").read_text())
    assert license_doc["service"] == "read"
    assert dt.datetime.fromisoformat(license_doc["expires"]) > dt.datetime.now(dt.UTC)


def test_refuses_without_license_mount_license_or_output(tmp_path, license_dir, sim_images):
    image = sim_images["sentiment"]
    refused(run_once(image, "Eula=accept", "Mounts:License=/nowhere", "Mounts:Output=/tmp"),
            "The provided license path was not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(run_once(image, "Eula=accept", "Mounts:License=/license", "Mounts:Output=/tmp",
                     mounts={empty: "/license"}), "No license for service 'sentiment'")
    refused(run_once(image, "Eula=accept", "Mounts:License=/license",
                     mounts={license_dir: "/license"}), "output mount must be specified")
    # A sentiment license does not start the read container.
    (license_dir / "read.license").write_text((license_dir / "sentiment.license").read_text())
    refused(run_once(sim_images["read"], "Eula=accept", "Mounts:License=/license",
                     "Mounts:Output=/tmp", mounts={license_dir: "/license"}),
            "license is for service 'sentiment', not 'read'")


def test_refuses_a_tampered_license_and_one_for_another_version(license_dir, sim_images):
    license_path = license_dir / "sentiment.license"
    genuine = license_path.read_text()
    document = json.loads(genuine)
    document["expires"] = "2999-12-31T00:00:00+00:00"   # a longer license, forged
    license_path.write_text(json.dumps(document))
    refused(run_once(sim_images["sentiment"], "Eula=accept", "Mounts:License=/license",
                     "Mounts:Output=/tmp", mounts={license_dir: "/license"}),
            "is not valid for this container")
    # The genuine 1.0 license does not start the 1.1 image.
    license_path.write_text(genuine)
    (newer,) = lab.ensure_simulator_images(version="1.1", services=["sentiment"])
    refused(run_once(newer.ref, "Eula=accept", "Mounts:License=/license",
                     "Mounts:Output=/tmp", mounts={license_dir: "/license"}),
            "issued for image version '1.0', this image is '1.1'")


def test_refuses_expired_license(tmp_path, sim_images):
    proc = run_once(sim_images["sentiment"], "Eula=accept", BILLING, "ApiKey=k",
                    "DownloadLicense=True", "Mounts:License=/license", "Sim:LicenseDays=-1",
                    mounts={tmp_path: "/license"})
    assert proc.returncode == 0
    refused(run_once(sim_images["sentiment"], "Eula=accept", "Mounts:License=/license",
                     "Mounts:Output=/tmp", mounts={tmp_path: "/license"}), "expired")


def test_non_root_service_needs_output_owned_by_its_user(tmp_path, sim_images):
    lic, out = tmp_path / "license", tmp_path / "output"
    lic.mkdir()
    out.mkdir(mode=0o755)
    os.chown(lic, 1001, 1001)
    image = sim_images["speech-to-text"]
    assert run_once(image, "Eula=accept", BILLING, "ApiKey=k", "DownloadLicense=True",
                    "Mounts:License=/license", mounts={lic: "/license"}).returncode == 0
    refused(run_once(image, "Eula=accept", "Mounts:License=/license", "Mounts:Output=/output",
                     mounts={lic: "/license", out: "/output"}), "not writable by uid 1001")


class Running:
    """A simulator container on the host network, on a free port."""

    def __init__(self, image: str, license_dir: Path, output: Path, warmup: float) -> None:
        self.port = free_port()
        self.name = f"airlift-sim-test-{self.port}"
        podman.run(["run", "-d", "--name", self.name, "--network", "host",
                    "-v", f"{license_dir}:/license:ro,Z", "-v", f"{output}:/output:Z", image,
                    "Eula=accept", "Mounts:License=/license", "Mounts:Output=/output",
                    f"Sim:Port={self.port}", f"Sim:WarmupSeconds={warmup}"])

    def request(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def wait_listening(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.request("/status")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise AssertionError(podman.run(["logs", self.name], check=False).stderr)

    def stop(self) -> None:
        podman.run(["rm", "-f", "-t", "2", self.name], check=False)


@pytest.fixture
def running(tmp_path, license_dir, sim_images):
    output = tmp_path / "output"
    output.mkdir()
    sims = []

    def start(warmup: float = 0) -> Running:
        sim = Running(sim_images["sentiment"], license_dir, output, warmup)
        sims.append(sim)
        sim.wait_listening()
        return sim

    yield start, output
    for sim in sims:
        sim.stop()


def test_ready_after_warmup_status_and_swagger(running):
    start, _ = running
    sim = start(warmup=2)
    assert sim.request("/ready")[0] == 503
    deadline = time.monotonic() + 10
    while sim.request("/ready")[0] != 200:
        assert time.monotonic() < deadline, "never became ready"
        time.sleep(0.2)
    status, body = sim.request("/status")
    assert status == 200 and body["service"] == "sentiment"
    status, body = sim.request("/swagger")
    assert status == 200 and "/text/analytics/v3.1/sentiment" in body["paths"]


def test_usage_is_metered_durably_and_survives_restart(running):
    start, output = running
    sim = start()
    path = "/text/analytics/v3.1/sentiment"
    sent = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda n: sim.request(path, {"documents": ["a"] * (n % 3 + 1)}),
                                range(120)))
    assert all(status == 200 for status, _ in results)
    sent = sum(n % 3 + 1 for n in range(120))
    _, usage = sim.request("/records/usage-logs/")
    assert usage["serviceName"] == "sentiment"
    assert usage["meters"] == [{"name": "Sentiment.TextRecords", "quantity": sent}]
    now = dt.datetime.now(dt.UTC)
    _, monthly = sim.request(f"/records/usage-logs/{now.month:02d}/{now.year}")
    assert monthly["meters"][0]["quantity"] == sent
    _, other = sim.request("/records/usage-logs/01/2001")
    assert other["meters"][0]["quantity"] == 0
    assert list(output.glob("usage-*.jsonl")), "records must live in the Output mount"

    sim.stop()
    again = start()
    _, usage = again.request("/records/usage-logs/")
    assert usage["meters"][0]["quantity"] == sent


def test_bad_inference_body_is_rejected_and_not_metered(running):
    start, _ = running
    sim = start()
    status, _ = sim.request("/text/analytics/v3.1/sentiment", {"nothing": 1})
    assert status == 400
    assert sim.request("/records/usage-logs/")[1]["meters"][0]["quantity"] == 0


def test_image_is_small(sim_images):
    size = int(podman.run(["image", "inspect", "--format", "{{.Size}}",
                           sim_images["sentiment"]]).stdout)
    assert size < 150 * 1000 * 1000


def test_padding_build_adds_a_layer_of_the_requested_size(sim_images):
    from airlift import lab

    padded = lab.ensure_simulator_images(services=["read"], padding_mb=5)[0].ref
    sizes = [int(podman.run(["image", "inspect", "--format", "{{.Size}}", ref]).stdout)
             for ref in (sim_images["read"], padded)]
    assert sizes[1] - sizes[0] >= 5 * 1024 * 1024
    # Cached: asking again builds nothing new.
    again = lab.ensure_simulator_images(services=["read"], padding_mb=5)[0].ref
    image_id = podman.run(["image", "inspect", "--format", "{{.Id}}", padded]).stdout
    assert podman.run(["image", "inspect", "--format", "{{.Id}}", again]).stdout == image_id
