"""deploy.yml against the lab: units, health, recovery without Ansible, removal.

The fleet is one podman and one docker host (lab.mixed_fleet): tests that loop over it
or take fleet[1] prove the behaviour on docker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import flat, run_playbook

from airlift import lab, podman

pytestmark = pytest.mark.lab


def run(playbook: str, *args: str, json_output: bool = False) -> subprocess.CompletedProcess:
    return run_playbook(playbook, *args, json_output=json_output)


def on(host: str, *command: str, check: bool = True) -> str:
    return podman.run(["exec", host, *command], check=check).stdout


def on_engine(host: str, *command: str, check: bool = True) -> str:
    """A command of the host's own engine (podman or docker), run on the host."""
    return on(host, lab.host_engine(host), *command, check=check)


def bare(image_id: str) -> str:
    """An image ID without docker's `sha256:` (podman reports it bare)."""
    return image_id.strip().split(":", 1)[-1]


def http(host: str, port: int, path: str, body: dict | None = None) -> int:
    code = (
        "import json,sys,urllib.request as u\n"
        "data = json.dumps(json.loads(sys.argv[3])).encode() if sys.argv[3] != 'null' else None\n"
        "try:\n"
        " r = u.urlopen(u.Request(f'http://127.0.0.1:{sys.argv[1]}{sys.argv[2]}', data=data,"
        " method='POST' if data else 'GET'), timeout=5); print(r.status)\n"
        "except u.HTTPError as e: print(e.code)\n"
        "except OSError: print(0)\n")
    out = on(host, "python3", "-c", code, str(port), path, json.dumps(body))
    return int(out.strip() or 0)


def wait_ready(host: str, port: int, timeout: float = 60) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if http(host, port, "/ready") == 200:
            return time.monotonic() - start
        time.sleep(1)
    raise AssertionError(f"{host}:{port} not ready after {timeout}s")


@pytest.fixture(scope="module")
def fleet():
    hosts = lab.mixed_fleet()
    limit = ["--limit", ",".join(hosts)]
    assert run("playbooks/stage.yml").returncode == 0
    assert run("playbooks/distribute.yml", *limit).returncode == 0
    proc = run("playbooks/deploy.yml", *limit)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return hosts


def limit(hosts):
    return ["--limit", ",".join(hosts)]


def test_services_run_enabled_ready_and_rerun_changes_nothing(fleet):
    for host in fleet:
        assert on(host, "systemctl", "is-enabled", "airlift-sentiment", "airlift-read").split() \
            == ["enabled", "enabled"]
        assert http(host, 5000, "/ready") == 200 and http(host, 5001, "/ready") == 200
    for host in fleet:
        unit = on(host, "cat", "/etc/systemd/system/airlift-sentiment.service")
        image_id = bare(on_engine(host, "image", "inspect", "--format", "{{.Id}}",
                                  "localhost/airlift-sim/sentiment:1.0"))
        assert f"    {image_id} \\" in unit           # pinned by ID, not by tag
        assert f"/usr/bin/{lab.host_engine(host)} run " in unit
        assert "Eula=accept Mounts:License=/license Mounts:Output=/output" in unit
        assert "ApiKey" not in unit and "Billing" not in unit
    proc = run("playbooks/deploy.yml", *limit(fleet), json_output=True)
    stats = json.loads(proc.stdout)["stats"]
    assert all(stats[host]["changed"] == 0 for host in fleet), stats


@pytest.mark.parametrize("index", [0, 1], ids=["podman", "docker"])
def test_killed_container_is_brought_back_by_systemd(fleet, index):
    host = fleet[index]
    before = on_engine(host, "inspect", "--format", "{{.Id}}", "airlift-sentiment").strip()
    on_engine(host, "kill", "airlift-sentiment")
    wait_ready(host, 5000)
    after = on_engine(host, "inspect", "--format", "{{.Id}}", "airlift-sentiment").strip()
    assert after != before


def test_rebooted_host_brings_every_service_back_without_ansible(fleet):
    lab.stop(fleet)
    lab.mixed_fleet()
    for host in fleet:
        wait_ready(host, 5000, timeout=90)
        wait_ready(host, 5001, timeout=90)


@pytest.mark.parametrize("index", [0, 1], ids=["podman", "docker"])
def test_removed_service_stops_but_its_usage_records_stay(fleet, index):
    host = fleet[index]
    route = "/vision/v3.2/read/syncAnalyze"
    assert http(host, 5001, route, {"url": "x"}) == 200
    only_sentiment = json.dumps({"airlift_services": [
        {"name": "sentiment", "catalog": "sim-sentiment", "port": 5000}]})
    proc = run("playbooks/deploy.yml", "--limit", host, "-e", only_sentiment)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert on(host, "systemctl", "is-active", "airlift-read", check=False).strip() != "active"
    assert on(host, "test", "-e", "/etc/systemd/system/airlift-read.service",
              check=False) == ""
    records = on(host, "sh", "-c", "cat /var/lib/airlift/output/read/usage-*.jsonl")
    assert '"meter": "Read.Pages"' in records
    assert run("playbooks/deploy.yml", "--limit", host).returncode == 0
    wait_ready(host, 5001)


@pytest.mark.parametrize("index", [0, 1], ids=["podman", "docker"])
def test_service_that_never_gets_ready_fails_with_its_journal(fleet, index):
    host = fleet[index]
    broken = json.dumps({
        "airlift_services": [{"name": "sentiment", "catalog": "sim-sentiment", "port": 5000},
                             {"name": "read", "catalog": "sim-read", "port": 5001,
                              "settings": {"Sim:WarmupSeconds": "not-a-number"}}],
        "airlift_catalog_overrides": {"sim-read": {"ready_timeout": 6}}})
    try:
        proc = run("playbooks/deploy.yml", "--limit", host, "-e", broken)
        assert proc.returncode != 0
        assert "airlift-read did not answer /ready within 6 s; last journal lines" in proc.stdout
        assert "could not convert string to float" in proc.stdout
    finally:
        assert run("playbooks/deploy.yml", "--limit", host).returncode == 0
    wait_ready(host, 5001)


def test_verify_passes_on_a_deployed_host_and_names_each_drift(fleet):
    host = fleet[1]
    proc = run("playbooks/verify.yml", "--limit", host, json_output=True)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert json.loads(proc.stdout)["stats"][host]["changed"] == 0
    license_file = json.loads(on(host, "cat", "/var/lib/airlift/state/licenses.json"))[
        "licenses"]["read"]["file"]
    on(host, "cp", "-p", license_file, "/root/license.orig")
    on(host, "systemctl", "stop", "airlift-sentiment.service")
    on(host, "sh", "-c", f"echo tampered >> {license_file}")
    try:
        proc = run("playbooks/verify.yml", "--limit", host)
        assert proc.returncode != 0
        out = flat(proc.stdout)
        assert "airlift-sentiment.service is inactive, not active" in out
        assert f"the license file of airlift-read, {license_file}, is not the one its unit" in out
        assert "airlift-read does not answer" not in out  # read still runs
    finally:
        on(host, "mv", "/root/license.orig", license_file)
        assert run("playbooks/distribute.yml", "--limit", host).returncode == 0
        assert run("playbooks/deploy.yml", "--limit", host).returncode == 0
    assert run("playbooks/verify.yml", "--limit", host).returncode == 0


def drift_found(result: dict) -> dict[str, set[tuple[str, str, str]]]:
    """Per host, the (area, kind, subject) differences the fast path's one call found."""
    return {host: {(item["area"], item["kind"], item["subject"])
                   for item in host_result.get("differences") or []}
            for play in result["plays"] for task in play["tasks"]
            if task["task"]["name"].startswith("Compare each host with what the bundle")
            for host, host_result in task["hosts"].items()}


def test_fast_path_finds_and_site_repairs_four_drifts(fleet):
    """The converged fast path's one call per host finds each drift, names the role that
    repairs it, and the same site.yml run repairs all four: a unit stopped and a unit file
    edited (first host, podman), an image removed and a license file replaced (second
    host, docker). Before the drifts, a converged fleet shows no difference on either
    engine (the unit files deploy would render hash the same as the installed ones)."""
    first, second = fleet
    converged = run("site.yml", *limit(fleet), json_output=True)
    assert converged.returncode == 0, converged.stdout[-3000:]
    assert drift_found(json.loads(converged.stdout)) == {first: set(), second: set()}
    unit_file = "/etc/systemd/system/airlift-read.service"
    images = json.loads(on(second, "cat", "/var/lib/airlift/state/images.json"))["images"]
    read_ref = next(ref for ref in images if "/read:" in ref)
    read_id = images[read_ref]["id"].split(":", 1)[-1]
    licenses = json.loads(on(second, "cat", "/var/lib/airlift/state/licenses.json"))["licenses"]
    license_file = licenses["sentiment"]["file"]
    on(first, "systemctl", "stop", "airlift-sentiment.service")
    on(first, "sh", "-c", f"echo '# edited by hand' >> {unit_file}")
    # Stopped first: docker keeps an image a container still uses (podman's --force
    # removes the container too).
    on(second, "systemctl", "stop", "airlift-read.service")
    on_engine(second, "rmi", "--force", read_ref)
    on(second, "sh", "-c", f"echo replaced > {license_file}")

    proc = run("site.yml", *limit(fleet), json_output=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    result = json.loads(proc.stdout)
    found = drift_found(result)
    assert ("deploy", "unit_inactive", "airlift-sentiment.service") in found[first]
    assert ("deploy", "file_differs", unit_file) in found[first]
    assert ("distribute", "image_missing", read_ref) in found[second]
    assert ("distribute", "license_differs", license_file) in found[second]
    assert not {area for area, _, _ in found[first]} & {"distribute", "frontdoor"}
    assert not {kind for _, kind, _ in found[second]} & {"file_differs", "file_missing"}
    assert all(result["stats"][host]["changed"] > 0 for host in fleet)

    assert on(first, "systemctl", "is-active", "airlift-sentiment.service").strip() == "active"
    assert "# edited by hand" not in on(first, "cat", unit_file)
    assert read_id in on_engine(second, "images", "--no-trunc", "--format", "{{.ID}}")
    assert licenses["sentiment"]["sha256"] in on(second, "sha256sum", license_file)
    wait_ready(second, 5001)
    wait_ready(first, 5000)


def test_missing_read_only_mount_is_refused_before_any_unit_changes(fleet):
    host = fleet[1]
    models = json.dumps({"airlift_catalog_overrides": {"sim-read": {"mounts": [
        {"name": "models", "target": "/usr/local/models", "read_only": True}]}}})
    before = on(host, "stat", "-c", "%Y", "/etc/systemd/system/airlift-read.service")
    proc = run("playbooks/deploy.yml", "--limit", host, "-e", models)
    assert proc.returncode != 0
    assert ("/var/lib/airlift/mounts/models (mounted read-only into read) is not a folder on "
            "this host") in flat(proc.stdout)
    assert on(host, "stat", "-c", "%Y", "/etc/systemd/system/airlift-read.service") == before
    on(host, "mkdir", "-p", "/var/lib/airlift/mounts/models")
    try:
        proc = run("playbooks/deploy.yml", "--limit", host, "-e", models)
        assert proc.returncode == 0, proc.stdout[-2000:]
        mounts = on_engine(host, "inspect", "--format",
                    "{{range .Mounts}}{{.Destination}}={{.Source}},{{.RW}} {{end}}",
                    "airlift-read")
        assert "/usr/local/models=/var/lib/airlift/mounts/models,false" in mounts
    finally:
        assert run("playbooks/deploy.yml", "--limit", host).returncode == 0
        on(host, "rmdir", "/var/lib/airlift/mounts/models")
    wait_ready(host, 5001)


def test_distribute_on_docker_loads_only_the_missing_image_and_checks_its_id(fleet):
    """A converged docker host moves nothing (changed 0); an image docker lost is the
    only one transferred and loaded, under the manifest's ID (docker: sha256:<id>)."""
    host = fleet[1]
    proc = run("playbooks/distribute.yml", "--limit", host, json_output=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert json.loads(proc.stdout)["stats"][host]["changed"] == 0
    ref = "localhost/airlift-sim/read:1.0"
    image_id = on_engine(host, "image", "inspect", "--format", "{{.Id}}", ref).strip()
    assert image_id.startswith("sha256:")
    on(host, "systemctl", "stop", "airlift-read.service")
    try:
        on_engine(host, "rmi", ref)
        assert not on_engine(host, "images", "--quiet", ref).strip()
        proc = run("playbooks/distribute.yml", "--limit", host)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "1 image(s) loaded" in flat(proc.stdout)
        assert on_engine(host, "image", "inspect", "--format", "{{.Id}}", ref).strip() \
            == image_id
    finally:
        on(host, "systemctl", "start", "airlift-read.service")
    wait_ready(host, 5001)


def test_preflight_on_docker_asks_the_daemon_and_names_a_stopped_one(fleet):
    """docker's client answers without dockerd, the units need it: preflight reports the
    daemon's version, and a stopped daemon as a failure naming the fix."""
    host = fleet[1]
    proc = run("playbooks/preflight.yml", "--limit", host)
    assert proc.returncode == 0, proc.stdout[-3000:]
    version = on(host, "docker", "version", "--format", "{{.Server.Version}}").strip()
    assert version.startswith("20.10.")
    # The socket too: it would start the daemon again on the first docker command.
    on(host, "systemctl", "stop", "docker.socket", "docker.service")
    try:
        proc = run("playbooks/preflight.yml", "--limit", host)
        assert proc.returncode != 0
        assert ("host.engine [host]: expected docker, observed docker installed, its daemon "
                "does not answer - start the daemon: systemctl enable --now docker.service"
                ) in flat(proc.stdout)
    finally:
        # The units Require docker.service: they stopped with it and start again with it.
        on(host, "systemctl", "start", "docker.service", "airlift-sentiment.service",
           "airlift-read.service")
    wait_ready(host, 5000)
    wait_ready(host, 5001)


def test_port_taken_by_another_program_stops_the_rollout_before_any_unit(fleet):
    host = fleet[1]
    on(host, "systemd-run", "--unit", "squatter", "python3", "-m", "http.server", "5002")
    extra = json.dumps({"airlift_services": [
        {"name": "sentiment", "catalog": "sim-sentiment", "port": 5000},
        {"name": "read", "catalog": "sim-read", "port": 5001},
        {"name": "second", "catalog": "sim-read", "port": 5002}]})
    try:
        for _ in range(20):  # until the squatter listens
            if http(host, 5002, "/") == 200:
                break
            time.sleep(0.5)
        proc = run("site.yml", "--limit", host, "-e", extra)
        assert proc.returncode != 0
        assert ("host.ports [second]: expected port 5002 free, observed port 5002 in use"
                in flat(proc.stdout))
        assert podman.run(["exec", host, "test", "-e",
                           "/etc/systemd/system/airlift-second.service"],
                          check=False).returncode != 0
        assert "airlift-second" not in on_engine(host, "ps", "--format", "{{.Names}}")
    finally:
        on(host, "systemctl", "stop", "squatter", check=False)


def test_gpu_service_gets_its_cdi_device_and_a_host_without_the_spec_is_refused(fleet):
    """A lab host with a fake GPU (CDI spec + device node + nvidia-smi, `airlift lab gpu`):
    preflight passes, the GPU simulator sees the device podman's CDI injection gave it.
    Without the spec, preflight refuses the host before any change, naming the fix."""
    host = fleet[0]  # podman: CDI (docker's --gpus route: README, "Container engines")
    lab.ensure_simulator_images(services=["summarization-gpu"])
    extra = json.dumps({"airlift_services": [
        {"name": "sentiment", "catalog": "sim-sentiment", "port": 5000},
        {"name": "read", "catalog": "sim-read", "port": 5001},
        {"name": "gsum", "catalog": "sim-summarization-gpu", "port": 5003}]})
    cli = subprocess.run([sys.executable, "-m", "airlift.cli", "lab", "gpu", host],
                         capture_output=True, text=True, check=False)
    assert cli.stdout.strip() == f"lab: fake GPU on {host}: CDI spec and nvidia-smi", cli.stderr
    try:
        assert run("playbooks/stage.yml", "-e", extra).returncode == 0
        proc = run("site.yml", "--limit", host, "-e", extra)
        assert proc.returncode == 0, proc.stdout[-3000:]
        unit = on(host, "cat", "/etc/systemd/system/airlift-gsum.service")
        assert "    --device nvidia.com/gpu=0 \\" in unit
        wait_ready(host, 5003)
        code = ("import urllib.request as u;"
                "print(u.urlopen('http://127.0.0.1:5003/gpu', timeout=5).read().decode())")
        # /dev/null's numbers: the fake node the host's CDI spec names.
        assert json.loads(on(host, "python3", "-c", code)) == {
            "device": "/dev/nvidia0", "present": True, "major": 1, "minor": 3}
        assert podman.run(["exec", host, "podman", "exec", "airlift-gsum", "test", "-c",
                           "/dev/nvidia0"], check=False).returncode == 0
        before = on(host, "stat", "-c", "%Y", "/etc/systemd/system/airlift-gsum.service")
        assert subprocess.run([sys.executable, "-m", "airlift.cli", "lab", "gpu", host,
                               "--no-spec"], check=False).returncode == 0
        proc = run("site.yml", "--limit", host, "-e", extra)
        assert proc.returncode != 0
        out = flat(proc.stdout)
        assert ("host.gpu_runtime [host]: expected CDI devices nvidia.com/gpu=0, observed "
                "nvidia.com/gpu=0 in no CDI spec (no spec in /etc/cdi or /var/run/cdi) - "
                "podman hands GPUs over through CDI: install nvidia-container-toolkit") in out
        assert "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in out
        assert on(host, "stat", "-c", "%Y",
                  "/etc/systemd/system/airlift-gsum.service") == before
    finally:
        lab.fake_gpu(host, spec=False, driver=False)
        assert run("playbooks/deploy.yml", "--limit", host).returncode == 0
    assert podman.run(["exec", host, "test", "-e", "/etc/systemd/system/airlift-gsum.service"],
                      check=False).returncode != 0
    assert "airlift-gsum" not in on(host, "podman", "ps")


def recap_of(output: str) -> dict[str, str]:
    return {line.split()[0]: line for line in output.splitlines() if " : ok=" in line}


def test_host_down_does_not_stop_deploy_or_health_of_the_others(fleet):
    """A host that vanishes: deploy and health go on with the others (no canary group in
    the lab), the host is counted unreachable (exit 4), the others change nothing."""
    down, up = fleet[1], fleet[0]
    lab.stop([down])
    try:
        for playbook in ("playbooks/deploy.yml", "playbooks/verify.yml"):
            proc = run(playbook, *limit(fleet))
            assert proc.returncode == 4, proc.stdout[-3000:]
            recaps = recap_of(proc.stdout)
            assert "unreachable=1" in recaps[down]
            assert "failed=0" in recaps[up] and "unreachable=0" in recaps[up]
            assert "changed=0" in recaps[up]
    finally:
        lab.mixed_fleet()
    wait_ready(down, 5000)
