"""Usage aggregation, the report files and `airlift report merge`, from synthetic results."""

from __future__ import annotations

import csv
import datetime as dt
import gc
import json
import shutil
import tracemalloc
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import pytest
from usage_page import all_time_figures

from airlift import cli, runner
from airlift.usage import FAILED, NO_RESULT, UNREACHABLE, UsageAggregator, redact
from airlift.usage_report import FILE_NAMES, merge, text_summary, write_reports

SERVICES = ("sentiment", "read", "speech")
MONTHS = [f"2026-{month:02d}" for month in range(1, 13)]
KEY = "0123456789abcdef" * 2


def log(service: str, quantity: float) -> dict:
    return {"apiType": "T", "serviceName": service,
            "meters": [{"name": f"{service}.calls", "quantity": quantity}]}


def usage(index: int, collected_at: str = "2026-12-31T12:00:00Z", scale: int = 1,
          services: tuple[str, ...] = SERVICES, **extra: object) -> dict:
    return {"schema": 1, "collected_at": collected_at, **extra, "services": [
        {"name": name, "catalog": f"sim-{name}", "collected_via": "running",
         "all_time": log(name, 12 * (index + 1) * scale),
         "months": {month: log(name, (index + 1) * scale) for month in MONTHS},
         "archive": {"path": f"raw/{name}-{index}.tar.gz", "sha256": "cd" * 32, "size": 5}}
        for name in services]}


def fleet(hosts: int, dest: Path) -> tuple[UsageAggregator, dict]:
    """N reporting hosts plus one failed and one unreachable, reports written to DEST."""
    agg = UsageAggregator()
    agg.expect(f"host-{i:05d}" for i in range(hosts + 3))
    for i in range(hosts):
        agg.add_usage(f"host-{i:05d}", usage(i))
    agg.mark(f"host-{hosts:05d}", FAILED, f"collect: could not start, ApiKey={KEY}")
    agg.mark(f"host-{hosts + 1:05d}", UNREACHABLE, "ssh: connection refused")
    header, _ = write_reports(agg, dest)
    return agg, header


def peak_memory(hosts: int, dest: Path) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        agg, _ = fleet(hosts, dest)
        agg.close()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_as_hosts_grow(tmp_path):
    """1,000 hosts x 3 services x 12 months: memory grows by bytes per host, not payload."""
    small = peak_memory(100, tmp_path / "small")
    large = peak_memory(1000, tmp_path / "large")
    spool_bytes_per_host = len(json.dumps(usage(0)))
    per_host = (large - small) / 900
    print(f"peak 100 hosts {small} B, 1000 hosts {large} B, ratio {large / small:.2f}, "
          f"{per_host:.0f} B per extra host (payload {spool_bytes_per_host} B)")
    assert large / small < 3.5  # the data grew tenfold
    assert per_host < spool_bytes_per_host / 5
    report = json.loads((tmp_path / "large" / FILE_NAMES["json"]).read_text())
    assert report["hosts_summary"] == {"expected": 1003, "reported": 1000,
                                       "reported_with_errors": 0, "failed": 2,
                                       "unreachable": 1}
    total = report["totals"]["read"]["meters"]["read.calls"]
    assert total["all_time"] == 12 * sum(range(1, 1001)) and total["all_time_hosts"] == 1000
    assert total["months"]["2026-06"] == sum(range(1, 1001))


def test_failed_and_unreachable_hosts_are_listed_never_zero(tmp_path):
    agg, header = fleet(3, tmp_path)
    hosts = {entry["host"]: entry for entry in agg.iter_hosts()}
    assert hosts["host-00003"] == {"host": "host-00003", "status": FAILED,
                                   "reason": "collect: could not start, ApiKey=[redacted]"}
    assert hosts["host-00004"]["status"] == UNREACHABLE
    assert hosts["host-00005"] == {"host": "host-00005", "status": FAILED, "reason": NO_RESULT}
    assert header["totals"]["sentiment"]["meters"]["sentiment.calls"]["all_time_hosts"] == 3
    with (tmp_path / FILE_NAMES["csv"]).open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["host"] >= "host-00003"
                and row["record_type"] != "total"]
    assert [(r["host"], r["status"], r["quantity"]) for r in rows] == [
        ("host-00003", FAILED, ""), ("host-00004", UNREACHABLE, ""), ("host-00005", FAILED, "")]
    for name in FILE_NAMES.values():
        assert KEY not in (tmp_path / name).read_text()
    lines = text_summary(agg, header, [])
    assert lines[0] == "airlift usage: 3 of 6 host(s) reported, 2 failed, 1 unreachable"
    assert any(line.startswith("  host-00004 unreachable: ssh") for line in lines)
    agg.close()


def test_a_newer_snapshot_replaces_an_older_one_and_errors_never_win():
    agg = UsageAggregator()
    agg.add_usage("h", usage(0, "2026-11-01T00:00:00Z"))
    agg.add_usage("h", usage(0, "2026-11-02T00:00:00Z", scale=3))   # newer: replaces
    agg.add_usage("h", usage(0, "2026-10-01T00:00:00Z", scale=100))  # older: ignored
    failing = usage(0, "2026-12-01T00:00:00Z", services=("read",))
    failing["services"][0] = {"name": "read", "error": f"no temporary instance: token={KEY}"}
    agg.add_usage("h", failing)  # an error is not a snapshot
    agg.add_usage("g", {"schema": 1, "collected_at": "2026-11-01T00:00:00Z", "services": [
        {"name": "read", "all_time": {"meters": [{"name": "read.calls", "quantity": "12"}]}},
        {"name": "speech", "error": "could not start a temporary instance"}]})
    agg.mark("h", UNREACHABLE, "later")
    assert agg.totals[("read", "read.calls", "all-time")] == 36
    assert agg.totals[("sentiment", "sentiment.calls", "2026-05")] == 3
    assert agg.host_counts[("read", "read.calls", "all-time")] == 1
    entries = {entry["host"]: entry for entry in agg.iter_hosts()}
    assert "error" not in entries["h"]["services"][0]
    assert entries["h"]["note"] == "unreachable after reporting: later"
    g_read, g_speech = entries["g"]["services"]
    assert g_read["error"].startswith("invalid usage data") and "all_time" not in g_read
    assert g_speech == {"name": "speech", "collected_at": "2026-11-01T00:00:00Z",
                        "error": "could not start a temporary instance"}
    agg.close()


def test_a_service_not_collected_is_said_in_every_summary(tmp_path):
    """A host that reported with one service failing is not counted as plainly reported."""
    agg = UsageAggregator()
    partial = usage(1)
    partial["services"][1] = {"name": "read", "collected_via": "temporary",
                              "error": f"could not start a temporary instance: token={KEY}"}
    agg.add_usage("whole", usage(0))
    agg.add_usage("partial", partial)
    agg.mark("gone", UNREACHABLE, "no route")
    header, _ = write_reports(agg, tmp_path)
    assert header["hosts_summary"] == {"expected": 3, "reported": 2, "reported_with_errors": 1,
                                       "failed": 0, "unreachable": 1}
    lines = text_summary(agg, header, [])
    assert lines[0] == ("airlift usage: 2 of 3 host(s) reported (1 with services not "
                        "collected), 0 failed, 1 unreachable")
    assert "  partial read not collected: could not start a temporary instance: "\
        "token=[redacted]" in lines
    # `airlift report show` (and `airlift collect`) read the written report back.
    (tmp_path / "usage").mkdir()
    for name in FILE_NAMES.values():
        (tmp_path / name).rename(tmp_path / "usage" / name)
    path = tmp_path / "usage" / FILE_NAMES["json"]
    html = tmp_path / "usage" / FILE_NAMES["html"]
    assert runner.usage_summary(tmp_path) == [*lines, f"  report: {path}", f"  report: {html}",
                                              f"  open in a browser: {html}"]
    page = TextOf()
    page.feed(html.read_text())
    text = " ".join(" ".join(page.text).split())
    assert "Needs attention: 1 unreachable, 1 partly collected; 2 of 3 host(s) reported" \
        in text
    assert "Services not collected (1 host(s) partly collected)" in text
    assert "partial read could not start a temporary instance" in text
    # A later snapshot where the service answers again clears the count.
    agg.add_usage("partial", usage(1, "2027-01-01T00:00:00Z"))
    assert agg.status_counts()["reported_with_errors"] == 0
    assert list(agg.service_problems()) == []
    agg.close()


def test_a_removed_services_records_stay_in_every_report_without_figures(tmp_path):
    agg = UsageAggregator()
    result = usage(0, services=("read",))
    archive = {"path": "raw/" + "ef" * 32 + ".tar.gz", "sha256": "ef" * 32, "size": 9,
               "host_path": "/var/lib/airlift/usage-archives/x.tar.gz"}
    result["services"] += [
        {"name": "retired", "collected_via": "removed", "output_dir": "/o/retired",
         "archive": archive},
        {"name": "speech", "error": "no temporary instance", "archive": archive}]
    agg.add_usage("h", result)
    header, _ = write_reports(agg, tmp_path / "run")
    assert list(header["totals"]) == ["read"]  # a removed service adds no figure, not 0
    assert header["hosts_summary"]["reported_with_errors"] == 1  # speech, not retired
    report = json.loads((tmp_path / "run" / FILE_NAMES["json"]).read_text())
    services = {svc["name"]: svc for svc in report["hosts"][0]["services"]}
    kept = {"path": archive["path"], "sha256": archive["sha256"], "size": 9}
    assert services["retired"] == {"name": "retired", "collected_via": "removed",
                                   "collected_at": "2026-12-31T12:00:00Z", "archive": kept}
    assert services["speech"]["archive"] == kept  # the raw records of a failed service too
    with (tmp_path / "run" / FILE_NAMES["csv"]).open() as handle:
        [row] = [row for row in csv.DictReader(handle) if row["service"] == "retired"]
    assert (row["record_type"], row["collected_via"], row["quantity"]) == (
        "service-removed", "removed", "")
    page = TextOf()
    page.feed((tmp_path / "run" / FILE_NAMES["html"]).read_text())
    assert "retired (removed): no longer deployed" in "".join(page.text)
    # Merged with an older snapshot that had figures, the figures are kept; merged alone,
    # the removed record and its archive link stay.
    agg.close()
    older = collect({"h": usage(0, "2026-01-01T00:00:00Z", services=("retired",))},
                    tmp_path / "older", "2026-01-01T01:00:00+00:00")
    header, _, _ = merge([tmp_path / "run", older], tmp_path / "merged")
    assert header["totals"]["retired"]["meters"]["retired.calls"]["all_time"] == 12
    header, _, _ = merge([tmp_path / "run"], tmp_path / "alone")
    merged = json.loads((tmp_path / "alone" / FILE_NAMES["json"]).read_text())
    retired = next(s for s in merged["hosts"][0]["services"] if s["name"] == "retired")
    assert retired["collected_via"] == "removed" and "all_time" not in retired
    assert retired["archive"]["path"] == f"../run/{archive['path']}"


def test_commitments_share_projection_and_warnings():
    agg = UsageAggregator(warn_percent=80)
    collected = "2026-07-02T12:00:00Z"  # 182.5 days into 2026
    agg.add_usage("h1", {"schema": 1, "collected_at": collected, "services": [
        {"name": name, "all_time": log(name, qty),
         "months": {f"2026-{m:02d}": log(name, qty / 7) for m in range(1, 8)}}
        for name, qty in (("sentiment", 700), ("read", 4200), ("speech", 70))]})
    agg.add_commitments({"sentiment": {"2026": 1000}, "read": {2026: 5000, 2025: 10},
                         "speech": {2027: 100}}, "test")
    rows = {(row["service"], row["year"]): row for row in
            agg.commitment_rows(agg.as_of(agg.last_collected))}
    sentiment = rows[("sentiment", 2026)]
    assert sentiment["used"] == 700 and sentiment["percent_used"] == 70.0
    assert sentiment["projected_year_end"] == pytest.approx(700 * 365 / 182.5, abs=0.01)
    assert sentiment["status"] == "warning" and "projected" in sentiment["warning"]
    assert sentiment["months_missing"] == []
    read = rows[("read", 2026)]
    assert read["percent_used"] == 84.0 and read["status"] == "warning"
    assert "past the 80% threshold" in read["warning"]
    past = rows[("read", 2025)]
    assert past["used"] == 0 and past["projected_year_end"] == 0 and past["status"] == "ok"
    assert len(past["months_missing"]) == 12
    future = rows[("speech", 2027)]
    assert future["projected_year_end"] is None and future["status"] == "ok"
    with pytest.raises(ValueError, match="not a finite number"):
        agg.add_commitments({"read": {2026: "lots"}}, "test")
    agg.close()


def test_csv_rows_sum_to_the_json_totals(tmp_path):
    agg, _ = fleet(20, tmp_path)
    agg.close()
    report = json.loads((tmp_path / FILE_NAMES["json"]).read_text())
    sums: dict[tuple[str, str, str], float] = defaultdict(float)
    totals = {}
    with (tmp_path / FILE_NAMES["csv"]).open() as handle:
        for row in csv.DictReader(handle):
            key = (row["service"], row["meter"], row["month"])
            if row["record_type"] == "usage":
                sums[key] += float(row["quantity"])
            elif row["record_type"] == "total":
                totals[key] = float(row["quantity"])
    assert sums == totals
    for service, entry in report["totals"].items():
        for meter, values in entry["meters"].items():
            assert totals[(service, meter, "all-time")] == values["all_time"]
            for month, quantity in values["months"].items():
                assert totals[(service, meter, month)] == quantity
    assert len(totals) == 3 * 13


class TextOf(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        self.urls += [value for name, value in attrs if name in {"src", "href"}]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_self_contained_and_shows_the_figures(tmp_path):
    agg, _ = fleet(30, tmp_path)
    agg.add_commitments({"read": {2026: 10_000}}, "test")
    header, _ = write_reports(agg, tmp_path, ["html"])
    agg.close()
    page = (tmp_path / FILE_NAMES["html"]).read_text()
    parser = TextOf()
    parser.feed(page)
    text = " ".join(parser.text)
    assert parser.urls == [] and "script" not in parser.tags and "http" not in page
    assert "svg" in parser.tags and "rect" in parser.tags
    assert f"{12 * sum(range(1, 31)):,}" in text  # all-time fleet total, formatted
    assert f"{sum(range(1, 31)):,}" in text        # a month's total
    for host, status in (("host-00000", "reported"), ("host-00030", "failed"),
                         ("host-00031", "unreachable")):
        assert host in text and status in text
    assert "Commitment plans" in text and "exceeded" in text
    assert KEY not in page
    # What the lab tests read: the figure after "All time:" under each service's heading.
    assert all_time_figures(page) == {
        (service, meter): values["all_time"] for service, entry in header["totals"].items()
        for meter, values in entry["meters"].items()}
    assert all_time_figures(page)[("read", "read.calls")] == 12 * sum(range(1, 31))


def test_all_time_figures_reads_each_heading_not_any_number(tmp_path):
    agg = UsageAggregator()
    agg.add_usage("h", {"schema": 1, "collected_at": "2026-12-31T12:00:00Z", "services": [
        {"name": "speech", "all_time": {"meters": [
            {"name": "Speech.Seconds", "quantity": 1234.5, "billedUnit": "1 hour"}]}},
        {"name": "read", "all_time": log("read", 12)}]})
    write_reports(agg, tmp_path, ["html"])
    agg.close()
    page = (tmp_path / FILE_NAMES["html"]).read_text()
    assert all_time_figures(page) == {("speech", "Speech.Seconds"): 1234.5,
                                      ("read", "read.calls"): 12}


def collect(hosts: dict[str, dict | str], run_dir: Path, generated: str) -> Path:
    """A run's report: host -> usage result, or 'unreachable'."""
    agg = UsageAggregator()
    agg.expect(hosts)
    for host, result in hosts.items():
        if result == UNREACHABLE:
            agg.mark(host, UNREACHABLE, "no route")
        else:
            agg.add_usage(host, {**result, "run_dir": str(run_dir)})
    write_reports(agg, run_dir, generated=dt.datetime.fromisoformat(generated))
    agg.close()
    return run_dir


def test_merge_newest_snapshot_wins_without_double_counting(tmp_path, capsys):
    site_a = collect({"a1": usage(0, "2026-11-01T00:00:00Z"),
                      "shared": usage(1, "2026-11-01T00:00:00Z"),
                      "late": UNREACHABLE}, tmp_path / "a", "2026-11-01T01:00:00+00:00")
    site_b = collect({"shared": usage(1, "2026-11-05T00:00:00Z", scale=2),
                      "late": usage(4, "2026-11-05T00:00:00Z"),
                      "b1": UNREACHABLE}, tmp_path / "b", "2026-11-05T01:00:00+00:00")
    out = tmp_path / "merged"
    # the older run named last, and given twice: order and repetition change nothing
    assert cli.main(["report", "merge", str(site_b), str(site_a),
                     str(site_a / FILE_NAMES["json"]), "--out", str(out)]) == 0
    assert "airlift usage: 3 of 4 host(s) reported, 0 failed, 1 unreachable" in \
        capsys.readouterr().out
    report = json.loads((out / FILE_NAMES["json"]).read_text())
    status = {entry["host"]: entry["status"] for entry in report["hosts"]}
    assert status == {"a1": "reported", "b1": "unreachable", "late": "reported",
                      "shared": "reported"}
    total = report["totals"]["read"]["meters"]["read.calls"]
    assert total["all_time"] == 12 * 1 + 12 * 2 * 2 + 12 * 5   # a1, shared (newer), late
    assert total["all_time_hosts"] == 3
    shared = next(entry for entry in report["hosts"] if entry["host"] == "shared")
    assert shared["collected_at"] == "2026-11-05T00:00:00Z"
    archive = shared["services"][0]["archive"]
    assert archive["path"] == "../b/raw/read-1.tar.gz" and archive["sha256"] == "cd" * 32
    assert [source["run_dir"] for source in report["run"]["merged_from"]] == [
        str(site_a), str(site_a), str(site_b)]
    assert sorted(p.name for p in out.iterdir()) == sorted(FILE_NAMES.values())
    # merging the merged report with an input again changes no total
    again = tmp_path / "again"
    assert cli.main(["report", "merge", str(out), str(site_b), "--out", str(again)]) == 0
    assert json.loads((again / FILE_NAMES["json"]).read_text())["totals"] == report["totals"]


def test_merge_links_the_raw_records_where_the_report_is_now(tmp_path):
    """Reports carried on media to another machine: run_dir inside names the old place."""
    collected = collect({"h": usage(0)}, tmp_path / "enclave" / "run1" / "usage",
                        "2026-12-31T13:00:00+00:00")
    (collected / "raw").mkdir()
    (collected / "raw" / "read-0.tar.gz").write_bytes(b"records")
    carried = tmp_path / "laptop" / "media" / "usage"
    carried.parent.mkdir(parents=True)
    shutil.move(collected, carried)
    out = tmp_path / "laptop" / "merged"
    merge([carried], out)
    report = json.loads((out / FILE_NAMES["json"]).read_text())
    [source] = report["run"]["merged_from"]
    assert source["run_dir"] == str(collected)  # where it was written, kept as provenance
    read = next(svc for svc in report["hosts"][0]["services"] if svc["name"] == "read")
    assert read["archive"]["path"] == "../media/usage/raw/read-0.tar.gz"
    assert (out / read["archive"]["path"]).read_bytes() == b"records"


def test_merge_refuses_what_is_not_a_usage_report(tmp_path, capsys):
    (tmp_path / "x.json").write_text('{"schema_version": 9, "kind": "airlift.usage-report"}')
    assert cli.main(["report", "merge", str(tmp_path / "x.json"), "--out",
                     str(tmp_path / "o")]) == cli.EXIT_BAD_INPUT
    assert "schema_version 9" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_redact_masks_key_looking_values_and_bounds_length():
    assert redact(f"ApiKey={KEY} failed") == "ApiKey=[redacted] failed"
    assert redact(f'{{"api_key": "{KEY}"}}') == '{"api_key=[redacted]'
    assert redact(f"bad key {KEY}.") == "bad key [redacted]."
    assert redact("sha " + "ab" * 32) == "sha " + "ab" * 32  # a sha256 is not a key
    assert len(redact("x" * 1000)) == 300


TRANSLATOR = "CognitiveServices.TextTranslation.Container.OneDocumentTranslatedCharacters"


def translator_usage(quantity: int, billed: int, collected_at: str) -> dict:
    """A host running disconnected Translator (billedUnit a number) and Speech (billedUnit
    a unit name, as before)."""
    def translated(q: float, b: float) -> dict:
        return {"type": "CommerceUsageResponse", "apiType": "texttranslation",
                "serviceName": "texttranslation",
                "meters": [{"name": TRANSLATOR, "quantity": q, "billedUnit": b}]}

    def speech(q: float) -> dict:
        return {"apiType": "speech", "meters": [
            {"name": "Speech.Seconds", "quantity": q, "billedUnit": "1 hour"}]}

    return {"schema": 1, "collected_at": collected_at, "services": [
        {"name": "translator", "catalog": "translator-text", "collected_via": "running",
         "all_time": translated(quantity, billed),
         "months": {"2026-06": translated(quantity, billed)}},
        {"name": "speech", "catalog": "speech-to-text", "collected_via": "running",
         "all_time": speech(60), "months": {"2026-06": speech(60)}}]}


def translator_report(dest: Path, commitment: float = 1_500_000) -> dict:
    """Two hosts: 500,000 + 750,000 characters translated, 750,000 + 1,125,000 billed."""
    agg = UsageAggregator()
    agg.add_usage("t1", translator_usage(500_000, 750_000, "2026-06-30T12:00:00Z"))
    agg.add_usage("t2", translator_usage(750_000, 1_125_000, "2026-06-30T12:00:00Z"))
    agg.add_commitments({"translator": {2026: commitment}}, "test")
    try:
        header, _ = write_reports(agg, dest)
    finally:
        agg.close()
    return header


def test_translator_billed_figure_through_json_csv_and_html(tmp_path):
    from usage_page import number, table_rows

    header = translator_report(tmp_path)
    report = json.loads((tmp_path / FILE_NAMES["json"]).read_text())
    meter = report["totals"]["translator"]["meters"][TRANSLATOR]
    assert meter["all_time"] == 1_250_000
    assert meter["billed_all_time"] == 1_875_000 and meter["billed_hosts"] == 2
    assert meter["billed_months"] == {"2026-06": 1_875_000}
    assert "billed_unit" not in meter  # a number is a figure, not a unit name
    t1 = next(svc for svc in report["hosts"][0]["services"] if svc["name"] == "translator")
    assert t1["billed_all_time"] == {TRANSLATOR: 750_000}
    assert t1["billed_months"] == {"2026-06": {TRANSLATOR: 750_000}}
    # A unit name in billedUnit works as before and makes no billed figure.
    speech = report["totals"]["speech"]["meters"]["Speech.Seconds"]
    assert speech["billed_unit"] == "1 hour" and "billed_all_time" not in speech
    # The commitment counts what Microsoft counts: 1,875,000 billed of 1,500,000 is 125 %
    # (exceeded); on the quantity it would read 83.3 %.
    [plan] = report["commitments"]
    assert plan["used"] == 1_875_000 and plan["percent_used"] == 125.0
    assert plan["status"] == "exceeded" and plan["counted"] == "billed"
    assert any("125.0% of 1,500,000 used" in w for w in report["warnings"])
    assert header["commitments"] == report["commitments"]

    with (tmp_path / FILE_NAMES["csv"]).open() as handle:
        rows = list(csv.DictReader(handle))
    totals = {(r["meter"], r["month"]): r for r in rows if r["record_type"] == "total"}
    assert totals[(TRANSLATOR, "all-time")]["quantity"] == "1250000"
    assert totals[(TRANSLATOR, "all-time")]["billed"] == "1875000"
    assert totals[(TRANSLATOR, "2026-06")]["billed"] == "1875000"
    assert totals[("Speech.Seconds", "all-time")]["billed"] == ""
    assert totals[("Speech.Seconds", "all-time")]["billed_unit"] == "1 hour"
    usage_rows = [r for r in rows if r["record_type"] == "usage" and r["meter"] == TRANSLATOR]
    assert sum(int(r["billed"]) for r in usage_rows if r["month"] == "all-time") == 1_875_000

    page = (tmp_path / FILE_NAMES["html"]).read_text()
    summary = {row["service"]: row for row in table_rows(page, "summary")}
    assert number(summary["translator"]["billed"]) == 1_875_000
    assert number(summary["translator"]["all time"]) == 1_250_000
    assert summary["translator"]["unit"] == "characters"
    assert number(summary["translator"]["commitment 2026 used"]) == 125.0
    assert summary["translator"]["status"] == "exceeded"
    assert summary["speech"]["billed"] == "" and summary["speech"]["unit"] == "seconds"
    [commitment] = table_rows(page, "commitments")
    assert number(commitment["used"]) == 1_875_000 and commitment["counted on"] == "billed"
    assert "Billed all time: <b>1,875,000</b>" in page
    assert "(billed 750,000)" in page  # beside the quantity in the host table
    assert all_time_figures(page)[("translator", TRANSLATOR)] == 1_250_000


def test_merge_keeps_the_billed_figure(tmp_path):
    translator_report(tmp_path / "a")
    out = tmp_path / "merged"
    _, _, lines = merge([tmp_path / "a"], out)
    before = json.loads((tmp_path / "a" / FILE_NAMES["json"]).read_text())
    merged = json.loads((out / FILE_NAMES["json"]).read_text())
    assert merged["totals"] == before["totals"]
    assert merged["totals"]["translator"]["meters"][TRANSLATOR]["billed_all_time"] == 1_875_000
    assert merged["commitments"][0]["percent_used"] == 125.0
    assert [svc.get("billed_all_time") for svc in merged["hosts"][1]["services"]] == [
        None, {TRANSLATOR: 1_125_000}]
    assert any(f"{TRANSLATOR} 1,250,000 (billed 1,875,000)" in line for line in lines)


def test_newer_snapshot_replaces_the_billed_figure_too(tmp_path):
    agg = UsageAggregator()
    agg.add_usage("t1", translator_usage(500_000, 750_000, "2026-06-01T00:00:00Z"))
    agg.add_usage("t1", translator_usage(600_000, 900_000, "2026-06-30T00:00:00Z"))
    totals = agg.fleet_totals()["translator"]["meters"][TRANSLATOR]
    agg.close()
    assert totals["billed_all_time"] == 900_000 and totals["all_time"] == 600_000


def test_a_billed_unit_that_is_not_finite_is_refused_not_dropped(tmp_path):
    bad = translator_usage(500_000, 750_000, "2026-06-30T12:00:00Z")
    bad["services"][0]["all_time"]["meters"][0]["billedUnit"] = float("inf")
    agg = UsageAggregator()
    agg.add_usage("t1", bad)
    [(host, service, error)] = list(agg.service_problems())
    agg.close()
    assert (host, service) == ("t1", "translator")
    assert error == "invalid usage data: billedUnit inf is not a finite number"
