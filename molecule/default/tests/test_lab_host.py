"""The lab hosts molecule created are real, disconnected systemd hosts with podman."""

import json
import os
import re
from pathlib import Path


def test_systemd_is_pid1_and_running(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in {"running", "degraded"}, state


def test_nothing_leaves_the_host(host):
    # Only lo, plus the bridge podman makes inside the host for its own containers and
    # the veths enslaved to it; and no route out.
    for link in json.loads(host.check_output("ip -j link")):
        name = link["ifname"]
        assert name == "lo" or name.startswith("cni-podman") or \
            link.get("master", "").startswith("cni-podman"), link
    routes = json.loads(host.check_output("ip -j route"))
    assert not [route for route in routes if route.get("dst") == "default"]


def test_podman_usable_inside_with_vfs_and_runc(host):
    info = json.loads(host.check_output("podman info --format json"))
    assert info["store"]["graphDriverName"] == "vfs"
    assert info["host"]["ociRuntime"]["name"] == "runc"
    # A real nested run, with no registry: import /bin/true and its libraries as an image.
    host.check_output(
        "mkdir -p /tmp/img && for f in /bin/true $(ldd /bin/true | grep -o '/[^ ]*'); "
        "do cp --parents $f /tmp/img; done "
        "&& tar -C /tmp/img -c . | podman import - localhost/molecule-true")
    # The lab hosts share the outer cgroup v1 tree: nested containers need their own
    # cgroup namespace (see lab/host/overlay/etc/containers/containers.conf).
    run = host.run("podman run --rm --network none --cgroupns=private --memory 64m "
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
    # JSON, not a Go template: testinfra's ansible backend would template "{{ }}".
    images = [name for image in json.loads(host.check_output("podman images --format json"))
              for name in image.get("Names", [])]
    assert "localhost/airlift-sim/sentiment:1.0" in images
    assert "localhost/airlift-sim/read:1.0" in images
    assert host.file("/var/lib/airlift/staging").exists
    assert host.run("ls -A /var/lib/airlift/staging").stdout.strip() == ""


def test_licenses_are_root_only(host):
    licenses = host.file("/var/lib/airlift/licenses")
    assert licenses.user == "root" and licenses.mode == 0o711
    for service in ("sentiment", "read"):
        directory = host.file(f"/var/lib/airlift/licenses/{service}")
        assert directory.mode == 0o700
        license_file = host.file(f"/var/lib/airlift/licenses/{service}/{service}.license")
        assert license_file.mode == 0o600 and license_file.user == "root"
    state = json.loads(host.file("/var/lib/airlift/state/licenses.json").content_string)
    assert set(state["licenses"]) == {"sentiment", "read"}


def test_services_enabled_listening_and_ready(host):
    for name, port in (("sentiment", 5000), ("read", 5001)):
        service = host.service(f"airlift-{name}")
        assert service.is_enabled and service.is_running
        assert host.socket(f"tcp://0.0.0.0:{port}").is_listening
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
    assert figures == {"sentiment": {"Sentiment.TextRecords": 6}, "read": {"Read.Pages": 4}}
    hosts = report["hosts_summary"]["expected"]
    totals = report["totals"]
    assert totals["sentiment"]["meters"]["Sentiment.TextRecords"]["all_time"] == 6 * hosts
    assert totals["read"]["meters"]["Read.Pages"]["all_time"] == 4 * hosts
    # What a reader of the HTML page sees: the host and the fleet's figures.
    text = " ".join(re.sub(r"<[^>]+>", " ", (latest.parent / "usage-report.html").read_text())
                    .split())
    assert name in text
    assert str(6 * hosts) in text and str(4 * hosts) in text
