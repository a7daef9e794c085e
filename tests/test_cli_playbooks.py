"""The airlift verbs against the lab: exit codes, progress, summary, artifacts."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from airlift import lab, podman

pytestmark = pytest.mark.lab
HOSTS = lab.host_names(2)
API_KEY = "lab-secret-api-key-do-not-print"


def airlift(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airlift.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, check=False)


def airlift_in_a_terminal(*args: str) -> tuple[int, str]:
    """Run with stdout on a pseudo-terminal, as an operator at a console would."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "airlift.cli", *args], cwd=ROOT,
                            stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(), b"".join(chunks).decode(errors="replace")


def artifacts_of(output: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith("artifacts"))
    return line.split(": ", 1)[1]


@pytest.fixture(scope="module")
def fleet():
    lab.up(len(HOSTS))
    assert airlift("stage").returncode == 0
    assert airlift("rollout", "--limit", ",".join(HOSTS)).returncode == 0
    return HOSTS


def test_success_prints_the_equivalent_command_progress_and_summary(fleet):
    proc = airlift("preflight", "--limit", ",".join(fleet))
    assert proc.returncode == 0, proc.stdout[-3000:]
    out = proc.stdout
    assert out.startswith(f"+ ansible-playbook --limit {','.join(fleet)} -e airlift_run_id=")
    assert out.splitlines()[0].endswith(" playbooks/preflight.yml")
    assert "\r" not in out                                 # piped: plain lines
    assert " 0 failed, 0 unreachable of 2] Gather " in out  # one line per task as it ends
    assert "2 ok, 0 failed, 0 unreachable of 2 host(s)" in out
    events = os.path.join(artifacts_of(out), "job_events")
    assert len(os.listdir(events)) > 10


def test_failed_host_exits_3_and_names_the_reason(fleet):
    too_big = json.dumps({"airlift_services": [
        {"name": "big", "catalog": "sim-sentiment", "port": 5000, "memory": "500g"}]})
    proc = airlift("preflight", "--limit", fleet[0], "-e", too_big)
    assert proc.returncode == 3, proc.stdout[-3000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith(fleet[0]))
    assert row.split()[1] == "failed" and "host.memory" in row


def test_bad_input_exits_2_before_any_host_changes(fleet):
    proc = airlift("rollout", "--limit", fleet[0], "-e", "airlift_container_engine=rkt")
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "airlift_container_engine" in proc.stdout
    missing = airlift("preflight", "-i", "inventories/nowhere")
    assert missing.returncode == 2
    assert "inventory inventories/nowhere not found" in missing.stdout


def test_unreachable_host_exits_4_and_is_listed(fleet):
    lab.stop([fleet[1]])
    try:
        proc = airlift("preflight", "--limit", ",".join(fleet))
    finally:
        lab.up(len(fleet))
    assert proc.returncode == 4, proc.stdout[-3000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith(fleet[1]))
    assert row.split()[1] == "unreachable"
    assert "1 ok, 0 failed, 1 unreachable of 2 host(s)" in proc.stdout


def test_terminal_gets_one_progress_line_rewritten_in_place(fleet):
    rc, out = airlift_in_a_terminal("preflight", "--limit", fleet[0], "--check")
    assert rc == 0, out[-3000:]
    assert "\r\033[K[0 done, 0 failed, 0 unreachable of 1] " in out
    assert "1 ok, 0 failed, 0 unreachable of 1 host(s)" in out


def test_collect_passes_the_report_location_on(fleet):
    proc = airlift("collect", "--limit", ",".join(fleet))
    assert proc.returncode == 0, proc.stdout[-3000:]
    report = next(line for line in proc.stdout.splitlines() if line.startswith("  report:"))
    path = report.split(": ", 1)[1]
    assert path.endswith("usage-report.json") and os.path.exists(path)
    shown = airlift("report", "show", os.path.dirname(path))
    assert shown.returncode == 0
    assert shown.stdout.startswith("airlift usage: 2 of 2 host(s) reported")


def test_no_secret_in_the_runner_artifacts(fleet):
    env_key = "env-api-key-never-in-artifacts"
    proc = subprocess.run([sys.executable, "-m", "airlift.cli", "stage", "-e",
                           "airlift_stage_renew_licenses=true"], capture_output=True, text=True,
                          cwd=ROOT, check=False, env={**os.environ, "AIRLIFT_API_KEY": env_key})
    assert proc.returncode == 0, proc.stdout[-3000:]
    folder = artifacts_of(proc.stdout)
    seen = 0
    for base, _, files in os.walk(os.path.dirname(folder)):
        for name in files:
            data = Path(base, name).read_bytes()
            seen += 1
            assert API_KEY.encode() not in data, name
            assert env_key.encode() not in data, name
    assert seen > 10
    assert API_KEY not in proc.stdout


def test_health_reads_only_and_names_a_stopped_service(fleet):
    proc = airlift("health", "--limit", ",".join(fleet))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert proc.stdout.splitlines()[0].endswith(" playbooks/verify.yml")
    podman.run(["exec", fleet[0], "systemctl", "stop", "airlift-sentiment.service"])
    try:
        proc = airlift("health", "--limit", ",".join(fleet))
    finally:
        podman.run(["exec", fleet[0], "systemctl", "start", "airlift-sentiment.service"])
    assert proc.returncode == 3, proc.stdout[-3000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith(fleet[0]))
    assert row.split()[1] == "failed" and "airlift-sentiment.service is inactive" in row


def test_rotate_with_the_bundle_already_running_changes_nothing(fleet):
    # The first rotation saves each host's rollback point; the next one has nothing to do.
    first = airlift("rotate", "--limit", ",".join(fleet))
    assert first.returncode == 0, first.stdout[-3000:]
    proc = airlift("rotate", "--limit", ",".join(fleet))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert proc.stdout.splitlines()[0].endswith(" playbooks/rotate.yml")
    assert "2 ok, 0 failed, 0 unreachable of 2 host(s)" in proc.stdout
    rows = [line.split() for line in proc.stdout.splitlines()
            if line.startswith(tuple(fleet))]
    # host, status, ok, changed: a rotation to what already runs changes no host.
    assert sorted(row[0] for row in rows) == sorted(fleet)
    assert all(row[3] == "0" for row in rows), rows


def test_certificates_issues_once_then_keeps_what_is_valid(fleet, tmp_path):
    door = ["--limit", fleet[0], "-e", json.dumps({
        "airlift_frontdoor_enabled": True, "airlift_frontdoor_ca_dir": str(tmp_path / "ca")})]
    first = airlift("certificates", *door)
    assert first.returncode == 0, first.stdout[-3000:]
    certificate = tmp_path / "ca" / "hosts" / fleet[0] / "server.crt"
    assert certificate.is_file()
    issued = certificate.read_bytes()
    again = airlift("certificates", *door)
    assert again.returncode == 0, again.stdout[-3000:]
    row = next(line.split() for line in again.stdout.splitlines()
               if line.startswith(fleet[0]))
    assert row[1] == "ok" and row[3] == "0", row
    assert certificate.read_bytes() == issued
