"""collect_usage.yml against the lab: totals equal what was sent, whatever the state of
the services and hosts; the raw records come along, named by their sha256."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import run_playbook
from test_deploy_playbook import http, on, wait_ready
from usage_page import all_time_figures

from airlift import lab

pytestmark = pytest.mark.lab
API_KEY = "lab-secret-api-key-do-not-print"
SENTIMENT = ("/text/analytics/v3.1/sentiment", "Sentiment.TextRecords")
READ = ("/vision/v3.2/read/syncAnalyze", "Read.Pages")


def collect(hosts: list[str], *extra: str) -> tuple[dict, Path, str]:
    proc = run_playbook("playbooks/collect_usage.yml", "--limit", ",".join(hosts), *extra)
    found = re.search(r"report: (\S+usage-report\.json)", proc.stdout)
    assert found, proc.stdout[-3000:] + proc.stderr[-2000:]
    path = Path(found.group(1))
    return json.loads(path.read_text()), path.parent, proc.stdout


def all_time(report: dict, host: str, service: str, meter: str) -> int:
    entry = next(item for item in report["hosts"] if item["host"] == host)
    assert entry["status"] == "reported", entry
    record = next(item for item in entry["services"] if item["name"] == service)
    return record["all_time"][meter]


def fleet_total(report: dict, service: str, meter: str) -> int:
    return report["totals"][service]["meters"][meter]["all_time"]


def send(host: str, sentiment_documents: int, read_requests: int) -> None:
    for _ in range(2):
        assert http(host, 5000, SENTIMENT[0],
                    {"documents": ["d"] * (sentiment_documents // 2)}) == 200
    for _ in range(read_requests):
        assert http(host, 5001, READ[0], {"url": "x"}) == 200


@pytest.fixture(scope="module")
def fleet():
    lab.up(2)
    hosts = lab.host_names(2)
    assert run_playbook("playbooks/stage.yml").returncode == 0
    proc = run_playbook("site.yml", "--limit", ",".join(hosts))
    assert proc.returncode == 0, proc.stdout[-3000:]
    return hosts


@pytest.fixture(scope="module")
def sent(fleet):
    """A baseline collection, then known requests: the report must move by exactly that."""
    before, _, _ = collect(fleet)
    plan = {fleet[0]: (6, 3), fleet[1]: (4, 5)}
    for host, (documents, requests) in plan.items():
        send(host, documents, requests)
    return before, plan


def test_totals_move_by_exactly_what_was_sent(fleet, sent):
    before, plan = sent
    after, run_dir, stdout = collect(fleet)
    for host, (documents, requests) in plan.items():
        assert all_time(after, host, "sentiment", SENTIMENT[1]) - \
            all_time(before, host, "sentiment", SENTIMENT[1]) == documents
        assert all_time(after, host, "read", READ[1]) - \
            all_time(before, host, "read", READ[1]) == requests
    assert fleet_total(after, "sentiment", SENTIMENT[1]) - \
        fleet_total(before, "sentiment", SENTIMENT[1]) == 10
    assert fleet_total(after, "read", READ[1]) - fleet_total(before, "read", READ[1]) == 8
    assert after["hosts_summary"] == {"expected": 2, "reported": 2,
                                      "reported_with_errors": 0, "failed": 0,
                                      "unreachable": 0}
    # The raw records came along, named by the sha256 of their content.
    for entry in after["hosts"]:
        for record in entry["services"]:
            archive = run_dir / record["archive"]["path"]
            assert hashlib.sha256(archive.read_bytes()).hexdigest() == record["archive"]["sha256"]
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path
    assert API_KEY not in stdout


def test_collecting_again_gives_identical_totals_and_archives(fleet, sent):
    first, first_dir, _ = collect(fleet)
    second, second_dir, _ = collect(fleet)
    assert first_dir != second_dir
    assert first["totals"] == second["totals"]
    names = [sorted(path.name for path in folder.glob("raw/*")) for folder in
             (first_dir, second_dir)]
    assert names[0] == names[1] and names[0]


def test_removed_services_records_are_still_archived(fleet, sent):
    """An Output directory no deployed service writes to (a service taken out of the
    inventory keeps it) comes along as `removed`, archived, with no figures."""
    host, retired = fleet[0], "/var/lib/airlift/output/retired-test"
    record = '{"quantity": 3}\n'
    on(host, "python3", "-c", "import pathlib, sys; out = pathlib.Path(sys.argv[1]); "
       "out.mkdir(exist_ok=True); (out / 'records.jsonl').write_text(sys.argv[2])",
       retired, record)
    try:
        report, run_dir, _ = collect(fleet)
        assert on(host, "cat", f"{retired}/records.jsonl") == record  # left as it was
    finally:
        on(host, "rm", "-rf", retired)  # this test's own directory, not a service's
    entries = {item["host"]: item for item in report["hosts"]}
    removed = next(item for item in entries[host]["services"] if item["name"] == "retired-test")
    assert removed["collected_via"] == "removed"
    assert "all_time" not in removed and "error" not in removed
    assert "retired-test" not in report["totals"]
    assert report["hosts_summary"]["reported_with_errors"] == 0
    assert "retired-test" not in [item["name"] for item in entries[fleet[1]]["services"]]
    archive = run_dir / removed["archive"]["path"]
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == removed["archive"]["sha256"]
    with tarfile.open(archive) as tar:
        assert tar.extractfile("retired-test/records.jsonl").read().decode() == record


def test_stopped_service_is_collected_through_a_temporary_instance(fleet, sent):
    """Also what a collection killed partway leaves: its temporary instance (here created,
    never removed) and unfetched archive copies. The next collection replaces the one and
    removes the others once old, keeping a copy young enough to be another run's."""
    host, archives = fleet[1], "/var/lib/airlift/usage-archives"
    expected, _, _ = collect(fleet)
    on(host, "systemctl", "stop", "airlift-read.service")
    on(host, "podman", "create", "--name", "airlift-usage-read", "--network", "none",
       "localhost/airlift-sim/read:1.0")
    leftovers = {f"{'a' * 64}.tar.gz": "-2 days", ".1-2.tar.gz.partial": "-2 days",
                 f"{'b' * 64}.tar.gz": "-5 minutes"}
    for name, age in leftovers.items():
        on(host, "sh", "-c", f"mkdir -p {archives} && echo x > {archives}/{name} && "
           f"touch -d '{age}' {archives}/{name}")
    try:
        report, _, _ = collect(fleet)
        assert on(host, "ls", "-A", archives).split() == [f"{'b' * 64}.tar.gz"]
        entry = next(item for item in report["hosts"] if item["host"] == host)
        record = next(item for item in entry["services"] if item["name"] == "read")
        assert record["collected_via"] == "temporary"
        assert record["all_time"] == \
            next(item for item in next(h for h in expected["hosts"] if h["host"] == host)
                 ["services"] if item["name"] == "read")["all_time"]
        assert report["totals"] == expected["totals"]
        # The temporary instance is gone, the service stays as the operator left it.
        names = on(host, "podman", "ps", "--all", "--format", "{{.Names}}").split()
        assert "airlift-usage-read" not in names and "airlift-read" not in names
        assert "airlift-sentiment" in names
    finally:
        on(host, "rm", "-f", f"{archives}/{'b' * 64}.tar.gz")
        on(host, "systemctl", "start", "airlift-read.service")
    wait_ready(host, 5001)


def test_stopped_host_is_listed_unreachable_never_zero(fleet, sent):
    down = fleet[1]
    lab.stop([down])
    try:
        report, run_dir, stdout = collect(fleet)
    finally:
        lab.up(len(fleet))
    entry = next(item for item in report["hosts"] if item["host"] == down)
    assert entry["status"] == "unreachable" and entry.get("reason")
    assert "services" not in entry or not entry["services"]
    assert report["hosts_summary"]["unreachable"] == 1
    assert "1 unreachable" in stdout
    html = (run_dir / "usage-report.html").read_text()
    text = TextOf.parse(html)
    assert down in text and "unreachable" in text
    figures = all_time_figures(html)
    assert figures[("read", READ[1])] == fleet_total(report, "read", READ[1])
    assert figures[("sentiment", SENTIMENT[1])] == fleet_total(report, "sentiment", SENTIMENT[1])
    wait_ready(down, 5000, timeout=90)
    wait_ready(down, 5001, timeout=90)


class TextOf(HTMLParser):
    """The visible text of a page, to check the figures a reader sees."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    @classmethod
    def parse(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        return " ".join(parser.parts)


def test_check_mode_starts_nothing_and_writes_no_archive(fleet):
    host = fleet[0]
    proc = run_playbook("playbooks/collect_usage.yml", "--limit", host, "--check")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert on(host, "sh", "-c", "ls /var/lib/airlift/usage-archives | wc -l").strip() == "0"
    # Running services are still read: a check run reports, it only changes nothing.
    assert "2 of 2 host(s) reported" not in proc.stdout and "1 of 1 host(s) reported" in proc.stdout
