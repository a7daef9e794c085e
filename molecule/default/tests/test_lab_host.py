"""The lab hosts molecule created are real, disconnected systemd hosts with podman, and
one with docker (airlift-mol-3, molecule.yml's host_vars): every check runs on both."""

import json
import os
import re
import sys
from pathlib import Path

# The project's test helpers (stdlib only), not on the verifier's path.
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from usage_page import all_time_figures

# molecule.yml's host_vars: airlift_container_engine per host (podman by default).
DOCKER_HOSTS = {"airlift-mol-3"}
# The engine's default bridge gateway: the host's own address as its containers see it.
BRIDGE = {"podman": "10.88.0.1", "docker": "172.17.0.1"}


def engine(host):
    return "docker" if host.backend.get_hostname() in DOCKER_HOSTS else "podman"


def test_systemd_is_pid1_and_running(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in {"running", "degraded"}, state


def test_nothing_leaves_the_host(host):
    # Only lo, plus the bridge the engine makes inside the host for its own containers
    # (cni-podman0, docker0) and the veths enslaved to it; and no route out.
    bridges = ("cni-podman", "docker0")
    for link in json.loads(host.check_output("ip -j link")):
        name = link["ifname"]
        assert name == "lo" or name.startswith(bridges) or \
            link.get("master", "").startswith(bridges), link
    routes = json.loads(host.check_output("ip -j route"))
    assert not [route for route in routes if route.get("dst") == "default"]


def test_engine_usable_inside_with_vfs_and_runc(host):
    if engine(host) == "docker":
        info = json.loads(host.check_output("docker info --format '{{json .}}'"))
        assert (info["Driver"], info["DefaultRuntime"]) == ("vfs", "runc")
    else:
        info = json.loads(host.check_output("podman info --format json"))
        assert info["store"]["graphDriverName"] == "vfs"
        assert info["host"]["ociRuntime"]["name"] == "runc"
    # A real nested run, with no registry: import /bin/true and its libraries as an image.
    host.check_output(
        "mkdir -p /tmp/img && for f in /bin/true $(ldd /bin/true | grep -o '/[^ ]*'); "
        "do cp --parents $f /tmp/img; done "
        f"&& tar -C /tmp/img -c . | {engine(host)} import - localhost/molecule-true")
    # The lab hosts share the outer cgroup v1 tree: nested containers need their own
    # cgroup namespace (podman: --cgroupns=private, see lab/host/overlay/etc/containers/
    # containers.conf; docker: its daemon's default, lab/host-docker/overlay/etc/docker).
    option = "" if engine(host) == "docker" else "--cgroupns=private "
    run = host.run(f"{engine(host)} run --rm --network none {option}--memory 64m "
                   "--cpus 0.5 localhost/molecule-true /bin/true")
    assert run.rc == 0, run.stderr


def test_preflight_report_lists_every_host():
    reports = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports"
    latest = sorted(reports.glob("*/preflight/compliance.json"))[-1]
    report = json.loads(latest.read_text())
    assert sorted(report["hosts"]) == ["airlift-mol-1", "airlift-mol-2", "airlift-mol-3"]
    for entry in report["hosts"].values():
        assert entry["status"] == "PASS"
        statuses = {item["id"]: item["status"] for item in entry["results"]}
        assert statuses["host.cpu_clock"] in {"WAIVED", "PASS"}


def test_images_of_the_bundle_are_loaded(host):
    images = host.check_output(f"{engine(host)} images --format "
                               "'{{.Repository}}:{{.Tag}}'").split()
    assert "localhost/airlift-sim/sentiment:1.0" in images
    assert "localhost/airlift-sim/read:1.0" in images
    assert "localhost/airlift-proxy:latest" in images   # the front door's, from the bundle
    assert host.file("/var/lib/airlift/staging").exists
    assert host.run("ls -A /var/lib/airlift/staging").stdout.strip() == ""


def test_licenses_are_root_only(host):
    licenses = host.file("/var/lib/airlift/licenses")
    assert licenses.user == "root" and licenses.mode == 0o711
    # The file is named after the service type (custom runs custom-template).
    for service, kind in (("sentiment", "sentiment"), ("read", "read"), ("layout", "layout"),
                          ("custom", "custom-template")):
        directory = host.file(f"/var/lib/airlift/licenses/{service}")
        assert directory.mode == 0o700
        license_file = host.file(f"/var/lib/airlift/licenses/{service}/{kind}.license")
        assert license_file.mode == 0o600 and license_file.user == "root"
    state = json.loads(host.file("/var/lib/airlift/state/licenses.json").content_string)
    assert set(state["licenses"]) == {"sentiment", "read", "layout", "custom"}


SERVICES = (("sentiment", 5000), ("read", 5001), ("layout", 5010), ("custom", 5011))
CA = "/etc/airlift/frontdoor/tls/ca.crt"
# GET a URL on the host: status and body, TLS verified against the lab CA.
FETCH = (
    "import ssl,sys,urllib.request as u, urllib.error as e\n"
    "ctx = ssl.create_default_context(cafile=sys.argv[2])\n"
    "try:\n"
    " r = u.urlopen(sys.argv[1], timeout=10, context=ctx); print(r.status, r.read().decode())\n"
    "except e.HTTPError as x: print(x.code, x.read().decode())\n"
    "except OSError as x: print(0, repr(x))\n")


def fetch(host, url):
    status, _, body = host.check_output(f"python3 -c '{FETCH}' {url} {CA}").partition(" ")
    return int(status), body


def test_services_enabled_listening_and_ready(host):
    for name, port in SERVICES:
        service = host.service(f"airlift-{name}")
        assert service.is_enabled and service.is_running
        # Behind the front door the services listen on loopback only.
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
        status = host.run(f"python3 -c \"import urllib.request as u; "
                          f"print(u.urlopen('http://127.0.0.1:{port}/ready').status)\"")
        assert status.stdout.strip() == "200", status.stderr
        unit = host.file(f"/etc/systemd/system/airlift-{name}.service").content_string
        assert "Eula=accept Mounts:License=/license Mounts:Output=/output" in unit
        assert host.file(f"/var/lib/airlift/output/{name}").is_directory


def test_usage_report_counts_exactly_what_was_sent(host):
    # side_effect.yml sent 3 x 2 sentiment documents and 4 read requests to each host.
    reports = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports"
    latest = sorted(reports.glob("*/usage/usage-report.json"))[-1]
    report = json.loads(latest.read_text())
    name = host.backend.get_hostname()
    entry = next(item for item in report["hosts"] if item["host"] == name)
    assert entry["status"] == "reported"
    figures = {service["name"]: service["all_time"] for service in entry["services"]}
    # The 403 on read's front door metered nothing; custom asked layout, which meters
    # only its own callers.
    assert figures == {"sentiment": {"Sentiment.TextRecords": 6}, "read": {"Read.Pages": 4},
                       "custom": {"CustomTemplate.Pages": 2}, "layout": {"Layout.Pages": 0}}
    hosts = report["hosts_summary"]["expected"]
    totals = report["totals"]
    assert totals["sentiment"]["meters"]["Sentiment.TextRecords"]["all_time"] == 6 * hosts
    assert totals["read"]["meters"]["Read.Pages"]["all_time"] == 4 * hosts
    # What a reader of the HTML page sees: the host and the fleet's figures.
    text = " ".join(re.sub(r"<[^>]+>", " ", (latest.parent / "usage-report.html").read_text())
                    .split())
    assert name in text
    figures = all_time_figures((latest.parent / "usage-report.html").read_text())
    assert figures[("sentiment", "Sentiment.TextRecords")] == 6 * hosts
    assert figures[("read", "Read.Pages")] == 4 * hosts


def test_https_through_the_front_door_is_verified_and_reaches_each_service(host):
    for name, port in (("sentiment", 5000), ("layout", 5010), ("custom", 5011)):
        status, body = fetch(host, f"https://localhost:{port + 10000}/status")
        assert status == 200, (name, body)
        assert json.loads(body)["service"] in {name, "custom-template"}
    # The certificate also names the host itself (airlift_frontdoor_host_names).
    name = host.backend.get_hostname()
    check = host.run("python3 -c \"import ssl,socket; c = ssl.create_default_context("
                     f"cafile='{CA}'); s = c.wrap_socket(socket.create_connection("
                     f"('127.0.0.1', 15000)), server_hostname='{name}'); print('ok')\"")
    assert check.stdout.strip() == "ok", check.stderr


def test_client_outside_the_allowed_networks_gets_403(host):
    status, body = fetch(host, "https://localhost:15001/ready")
    assert status == 403, body


def test_dependent_service_answers_through_what_it_needs(host):
    status, body = fetch(host, "https://localhost:15011/status")
    assert status == 200, body
    assert json.loads(body)["dependsOn"] == f"http://{BRIDGE[engine(host)]}:5010"
    unit = host.file("/etc/systemd/system/airlift-custom.service").content_string
    assert "Requires=airlift-layout.service" in unit and "After=airlift-layout.service" in unit


def test_document_intelligence_pair_shares_one_shared_folder(host):
    shared = host.file("/var/lib/airlift/mounts/shared")
    assert shared.is_directory and shared.mode == 0o750
    for name in ("layout", "custom"):
        mounts = host.check_output(f"{engine(host)} inspect --format '{{{{range .Mounts}}}}"
                                   "{{.Destination}}={{.Source}} {{end}}' airlift-%s", name)
        assert "/shared=/var/lib/airlift/mounts/shared" in mounts.split()
        unit = host.file(f"/etc/systemd/system/airlift-{name}.service").content_string
        assert '"Mounts:Shared=/shared"' in unit and '"SharedRootFolder=/shared"' in unit


def test_service_ports_are_not_reachable_beyond_loopback(host):
    # The bridge gateway is the host's own address on its container bridge: a neighbour's
    # view.
    probe = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[2], int(sys.argv[1])),"
             " timeout=3); print('open')\nexcept OSError: print('closed')\n")
    bridge = BRIDGE[engine(host)]
    for _, port in (("sentiment", 5000), ("read", 5001), ("custom", 5011)):
        assert host.check_output(f"python3 -c \"{probe}\" {port} {bridge}") == "closed", port
    # layout is also published on the bridge: custom's container reaches it there.
    assert host.check_output(f"python3 -c \"{probe}\" 5010 {bridge}") == "open"


def test_access_log_has_one_json_line_per_request(host):
    lines = host.file("/var/lib/airlift/output/frontdoor/access.log").content_string.splitlines()
    records = [json.loads(line) for line in lines]
    seen = {(record["service"], record["status"]) for record in records}
    assert ("sentiment", 200) in seen and ("custom", 200) in seen and ("read", 403) in seen


def test_host_key_is_root_only_and_the_ca_key_never_leaves_the_controller(host):
    key = host.file("/etc/airlift/frontdoor/tls/server.key")
    assert key.user == "root" and key.mode == 0o600
    assert host.file("/etc/airlift/frontdoor").mode == 0o700
    assert host.run("grep -rl 'PRIVATE KEY' /etc/airlift /var/lib/airlift").stdout.split() == [
        "/etc/airlift/frontdoor/tls/server.key"]


def test_access_log_archive_reached_the_controller(host):
    reports = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports"
    name = host.backend.get_hostname()
    assert list(reports.glob(f"*/usage/access-logs/{name}-frontdoor-*.tar.gz"))


def main_pid(host, unit):
    return host.check_output(f"systemctl show --value --property MainPID {unit}")


def container_ids(host):
    lines = host.check_output(f"{engine(host)} ps --no-trunc --format "
                              "'{{.Names}} {{.ID}}'").splitlines()
    return dict(line.split() for line in lines)


def test_proxy_and_services_restart_independently(host):
    before = container_ids(host)
    host.check_output("systemctl restart airlift-frontdoor")
    after = container_ids(host)
    for name, _ in SERVICES:
        assert after[f"airlift-{name}"] == before[f"airlift-{name}"], name
    proxy_pid = main_pid(host, "airlift-frontdoor")
    host.check_output("systemctl restart airlift-sentiment")
    assert main_pid(host, "airlift-frontdoor") == proxy_pid
    for _ in range(30):
        if fetch(host, "https://localhost:15000/ready")[0] == 200:
            break
        host.run("sleep 1")
    assert fetch(host, "https://localhost:15000/ready")[0] == 200
