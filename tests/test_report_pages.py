"""The usage and compliance pages, rendered by the real writers for 3 and 1,000 hosts: the
figures a person reads on the first screen equal the JSON, the pages stay small at fleet
size, and they need nothing from a network."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_fixtures import GENERATED, TRANSLATOR_METER, compliance_report, usage_report
from usage_page import all_time_figures, number, table_rows

from airlift.usage_report import merge

# The unit named beside each fixture meter, from src/airlift/meter_units.yml.
UNITS = {"Sentiment.TextRecords": "text records", "Read.Pages": "pages",
         "Speech.Seconds": "seconds", TRANSLATOR_METER: "characters"}

# Measured at 1,000 hosts: usage page 0.56 MB (four services, Translator's billed
# figures), compliance page 0.51 MB. A page that grows
# per host by more than a table row (a chart per host, the JSON inlined) fails this.
MAX_PAGE_BYTES = 1_500_000


class Page(HTMLParser):
    """Tags, URL-bearing attributes, inline scripts and the text of a page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self.h2: list[str] = []
        self._script = self._style = False
        self._h2: list[str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags[tag] += 1
        self.urls += [value for name, value in attrs
                      if name in {"src", "href", "action", "srcset", "poster", "data"}]
        self._script, self._style = tag == "script", tag == "style"
        if tag == "h2":
            self._h2 = []

    def handle_endtag(self, tag: str) -> None:
        self._script = self._style = False
        if tag == "h2" and self._h2 is not None:
            self.h2.append("".join(self._h2))
            self._h2 = None

    def handle_data(self, data: str) -> None:
        if self._h2 is not None:
            self._h2.append(data)
        if not self._style:
            (self.scripts if self._script else self.text).append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def assert_offline(html: str, page: Page) -> None:
    """Nothing is fetched: no URL attribute, no stylesheet link, no import, no url()."""
    assert page.urls == []
    assert not page.tags["link"] and not page.tags["iframe"] and not page.tags["img"]
    assert not re.search(r"https?:|//[a-z]|@import|url\(", html, re.IGNORECASE)


@pytest.fixture(scope="module", params=[3, 1000], ids=["3-hosts", "1000-hosts"])
def usage(request, tmp_path_factory):
    hosts = request.param
    dest = tmp_path_factory.mktemp(f"usage{hosts}")
    usage_report(hosts, dest, *((3, 2) if hosts == 3 else (10, 71)))
    html = (dest / "usage-report.html").read_text()
    return hosts, json.loads((dest / "usage-report.json").read_text()), html, dest


@pytest.fixture(scope="module", params=[3, 1000], ids=["3-hosts", "1000-hosts"])
def preflight(request, tmp_path_factory):
    hosts = request.param
    dest = tmp_path_factory.mktemp(f"preflight{hosts}")
    written = compliance_report(hosts, dest)
    html = Path(written["files"]["html"]).read_text()
    return hosts, json.loads((dest / "compliance.json").read_text()), html


def test_usage_summary_table_equals_the_json(usage):
    hosts, report, html, _ = usage
    counts = report["hosts_summary"]
    month = report["run"]["as_of"][:7]
    not_collected = Counter(svc["name"] for entry in report["hosts"]
                            for svc in entry.get("services") or [] if "error" in svc)
    plans = {row["service"]: row for row in report["commitments"] if row["year"] == 2026}
    rows = table_rows(html, "summary")
    expected = [(service, meter) for service, entry in report["totals"].items()
                for meter in entry["meters"]]
    assert [(row["service"], row["meter"].split(" billed per ")[0]) for row in rows] == expected
    for row in rows:
        service, meter = row["service"], row["meter"].split(" billed per ")[0]
        values = report["totals"][service]["meters"][meter]
        assert number(row["all time"]) == values["all_time"]
        assert number(row[f"this month ({month})"]) == values["months"].get(month)
        assert number(row["hosts reported"]) == values["all_time_hosts"]
        missing = counts["failed"] + counts["unreachable"] + not_collected[service]
        assert number(row["hosts missing"]) == missing
        # Translator reports a numeric billedUnit (1.5 times the characters): its summed
        # figure is shown; the other services report none and the cell stays empty.
        if service == "translator":
            assert number(row["billed"]) == values["billed_all_time"] == sum(
                svc["billed_all_time"][meter] for entry in report["hosts"]
                for svc in entry.get("services") or [] if svc["name"] == service)
            assert values["billed_all_time"] == values["all_time"] * 3 // 2
        else:
            assert row["billed"] == "" and "billed_all_time" not in values
        assert row["unit"] == UNITS[meter]
        plan = plans.get(service)
        if plan:
            assert number(row["commitment 2026 used"]) == plan["percent_used"]
            assert number(row["projected at year end"]) == round(plan["projected_percent"], 1)
        status = plan["status"] if plan and plan["status"] != "ok" else (
            "hosts missing" if missing else "ok")
        assert row["status"] == status
        if values.get("billed_unit"):
            assert row["meter"] == f"{meter} billed per {values['billed_unit']}"
    # The headings lab tests read still give each figure once.
    assert all_time_figures(html) == {key: report["totals"][key[0]]["meters"][key[1]]
                                      ["all_time"] for key in expected}
    page = Page(html)
    words = page.words
    # First the summary and what needs attention, then the detail.
    assert page.h2 == [f"What to report (as of {report['run']['as_of']})", "Needs attention",
                       "Per site", "Commitment plans", "Usage per service and month",
                       "Usage per host (all time)", "Hosts"]
    reported = f"{counts['reported']:,} of {counts['expected']:,} host(s) reported"
    assert reported in words
    assert (f"{counts['failed']:,} host(s) failed" in words) is bool(counts["failed"])
    failed = table_rows(html, "failed")
    listed = [entry["host"] for entry in report["hosts"] if entry["status"] == "failed"]
    assert [row["host"] for row in failed] == listed[:50]
    if hosts == 1000:
        assert f"... and {len(listed) - 50:,} more in the host table" in words
        assert "Services not collected (10 host(s) partly collected)" in words
    for warning in report["warnings"]:
        assert warning in words
    assert any("past the 80% threshold" in w for w in report["warnings"]) is (hosts == 1000)
    assert "inventories/example" in words and "reports/20261231T120000Z/usage" in words


def test_usage_per_site_figures_add_up_to_the_fleet(usage):
    hosts, report, html, _ = usage
    rows = table_rows(html, "sites")
    sites = Counter(entry["site"] for entry in report["hosts"])
    assert {row["site"] for row in rows} == set(sites) == {"site_north", "site_south"}
    for row in rows:
        if row["hosts"]:
            status = Counter(entry["status"] for entry in report["hosts"]
                             if entry["site"] == row["site"])
            assert number(row["hosts"]) == sites[row["site"]]
            assert number(row["failed"]) == status["failed"]
            assert number(row["unreachable"]) == status["unreachable"]
    for service, entry in report["totals"].items():
        for meter, values in entry["meters"].items():
            at = [number(row["all time"]) for row in rows
                  if (row["service"], row["meter"]) == (service, meter)]
            assert sum(x or 0 for x in at) == values["all_time"]
    hosts_table = table_rows(html, "hosts")
    assert len(hosts_table) == hosts
    assert [(row["host"], row["site"], row["status"]) for row in hosts_table] == [
        (entry["host"], entry["site"], "partial" if any(
            "error" in svc for svc in entry.get("services") or []) else entry["status"])
        for entry in report["hosts"]]


def test_usage_page_is_small_offline_and_prints_whole(usage):
    hosts, _, html, _ = usage
    page = Page(html)
    assert_offline(html, page)
    assert page.scripts == []  # nothing to filter here: the page needs no script at all
    if hosts == 1000:
        assert len(html.encode()) < MAX_PAGE_BYTES
    assert_prints_whole(html)


def test_merged_report_keeps_sites_and_names_its_inputs(usage, tmp_path):
    _, report, _, dest = usage
    _, _, lines = merge([dest], tmp_path / "merged")
    merged = json.loads((tmp_path / "merged" / "usage-report.json").read_text())
    assert [e.get("site") for e in merged["hosts"]] == [e["site"] for e in report["hosts"]]
    assert merged["run"]["merged_from"][0]["inventory"] == ["inventories/example"]
    html = (tmp_path / "merged" / "usage-report.html").read_text()
    words = Page(html).words
    assert "merge of 1 report(s)" in words and "inventory inventories/example" in words
    assert lines[-1] == f"  open in a browser: {tmp_path / 'merged' / 'usage-report.html'}"
    assert table_rows(html, "summary") == table_rows(
        (dest / "usage-report.html").read_text(), "summary")


def test_compliance_summary_equals_the_json(preflight):
    hosts, report, html = preflight
    summary = report["summary"]
    [fleet] = table_rows(html, "hosts-summary")
    assert {key: number(fleet[key]) for key in ("hosts", "passed", "failed", "unreported")} \
        == {"hosts": hosts, "passed": summary["hosts"]["PASS"],
            "failed": summary["hosts"]["FAIL"], "unreported": summary["hosts"]["UNREPORTED"]}
    [total] = table_rows(html, "checks-total")
    assert {status: number(total[status]) for status in summary["checks"]} \
        == summary["checks"]
    checks = {row["check"]: row for row in table_rows(html, "checks-summary")}
    assert {status: number(checks["all checks"][status]) for status in summary["checks"]} \
        == summary["checks"]
    per_check: dict[str, Counter] = {}
    for entry in report["hosts"].values():
        for item in entry["results"]:
            per_check.setdefault(item["id"], Counter())[item["status"]] += 1
    for check, counted in per_check.items():
        assert {s: number(checks[check][s]) for s in ("PASS", "FAIL", "WARN", "WAIVED")} == {
            s: counted[s] for s in ("PASS", "FAIL", "WARN", "WAIVED")}
    words = Page(html).words
    failed, missing = summary["hosts"]["FAIL"], summary["hosts"]["UNREPORTED"]
    if failed or missing:
        assert f"{failed} of {hosts} host(s) failed, {missing} did not report" in words
    else:
        assert f"All {hosts} host(s) passed" in words and "No check failed" in words
    assert "inventory inventories/example/hosts.yml" in words and "20261231T130000Z" in words


def _listed(cell: str) -> int:
    found = re.match(r"([\d,]+) host\(s\)|every reported host \(([\d,]+)\)", cell)
    assert found, cell
    return int((found[1] or found[2]).replace(",", ""))


def test_compliance_failures_are_grouped_by_check_with_the_fix(preflight):
    _, report, html = preflight
    fails = Counter(item["id"] for entry in report["hosts"].values()
                    for item in entry["results"] if item["status"] == "FAIL")
    unreported = [host for host, entry in report["hosts"].items()
                  if entry["status"] == "UNREPORTED"]
    grouped: Counter[str] = Counter()
    for row in table_rows(html, "failures"):
        check = row["check"].split(" ")[0]
        grouped["unreported" if check == "host" else check] += _listed(row["hosts"])
        if check == "host.cores":
            assert row["fix"] == "assign fewer cpus to the services, or a larger host"
        if check == "host":
            assert row["hosts"].endswith(", ".join(unreported[:20])) or len(unreported) > 20
    assert grouped == Counter({**fails, **({"unreported": len(unreported)}
                                           if unreported else {})})
    warned = Counter(item["id"] for entry in report["hosts"].values()
                     for item in entry["results"] if item["status"] == "WARN")
    assert sum(_listed(row["hosts"]) for row in table_rows(html, "warnings")) == sum(
        warned.values())


def test_compliance_waivers_show_justification_and_days_left(preflight):
    _, report, html = preflight
    [row] = table_rows(html, "waivers")
    waived = [item for entry in report["hosts"].values() for item in entry["results"]
              if item["status"] == "WAIVED"]
    assert {item["waiver"]["expires"] for item in waived} == {row["expires"]}
    assert row["justification"] == waived[0]["waiver"]["justification"]
    today = dt.date.fromisoformat(report["generated"][:10])
    assert number(row["days left"]) == (dt.date.fromisoformat(row["expires"]) - today).days
    assert _listed(row["hosts"]) == len(waived)
    assert GENERATED.date() < dt.date.fromisoformat(row["expires"])


def test_compliance_matrix_has_every_host_and_filters_offline(preflight):
    hosts, report, html = preflight
    rows = re.findall(r'<tr class="r-(\w+)([^"]*)"><td class="h \w+">([^<]+)</td>', html)
    assert [(host, status) for status, _, host in rows] == [
        (host, entry["status"]) for host, entry in report["hosts"].items()]
    warned = {host for host, entry in report["hosts"].items()
              if any(item["status"] == "WARN" for item in entry["results"])}
    assert {host for _, flags, host in rows if "r-WARN" in flags} == warned
    page = Page(html)
    assert_offline(html, page)
    # One inline script, a few lines: each filter value switches on a CSS rule that hides
    # the rows without that class.
    [script] = page.scripts
    assert len(script.strip().splitlines()) <= 8 and "'only-' + input.value" in script
    values = re.findall(r'<input type=radio name=show value="(\w*)"', html)
    assert values == ["", "FAIL", "UNREPORTED", "WARN", "WAIVED", "PASS"]
    for value in values[1:]:
        assert f"#matrix.only-{value} tbody tr:not(.r-{value})" in html
    if hosts == 1000:
        assert len(html.encode()) < MAX_PAGE_BYTES


def test_compliance_failures_of_one_check_are_one_row_whatever_each_host_observed(
        preflight):
    """host.disk fails on every 5th host, each short by its own amount: at 1,000 hosts
    that is 19 distinct observed values and one row, with their range and count."""
    hosts, report, html = preflight
    disk = [item for entry in report["hosts"].values() for item in entry["results"]
            if item["id"] == "host.disk" and item["status"] == "FAIL"]
    observed = {item["observed"] for item in disk}
    rows = [row for row in table_rows(html, "failures") if row["check"].startswith("host.disk")]
    assert len(rows) == 1
    [row] = rows
    assert _listed(row["hosts"]) == len(disk)
    assert row["fix"] == "free space under /var/lib/airlift, or a larger disk"
    if hosts == 1000:
        assert len(observed) == 19
        low, high = min(observed, key=lambda v: int(v.split()[0])), max(
            observed, key=lambda v: int(v.split()[0]))
        assert row["expected / observed"] == (
            f"expected 40 GB observed {low} to {high} (19 distinct values)")
        assert (low, high) == ("20 GB", "38 GB")
    else:
        assert row["expected / observed"] == f"expected 40 GB observed {disk[0]['observed']}"
    # Every failing check is one row per (check, subject, fix), never one per value.
    keys = [(row["check"].split(" ")[0], row["subject"], row["fix"])
            for row in table_rows(html, "failures")]
    assert len(keys) == len(set(keys))


def test_unknown_meter_is_counted_in_units():
    from airlift.usage_html import unit_of

    assert unit_of("Sentiment.TextRecords") == "text records"
    assert unit_of("SpeechToText.AudioSeconds") == "audio seconds"
    assert unit_of(TRANSLATOR_METER) == "characters"
    assert unit_of("Something.Widgets") == "units"


def assert_prints_whole(html: str) -> None:
    """The print style sheet: a page box that fits A4 and Letter, headers repeated on each
    printed page, no row or chart split across pages."""
    style = html[html.index("<style>"):html.index("</style>")]
    media = style[style.index("@media print"):]
    page = re.search(r"@page\{([^}]*)\}", media)
    assert page and "size:auto" in page[1] and re.search(r"margin:\d+mm", page[1])
    assert "thead{display:table-header-group}" in media
    assert re.search(r"tr,[^{}]*\{break-inside:avoid\}", media)


def test_compliance_page_prints_whole(preflight):
    _, _, html = preflight
    assert_prints_whole(html)
    assert ".noprint{display:none !important}" in html  # the filter is not printed


def test_usage_page_without_sites_has_no_site_column(tmp_path):
    usage_report(3, tmp_path, 3, 2, sites=False)
    html = (tmp_path / "usage-report.html").read_text()
    report = json.loads((tmp_path / "usage-report.json").read_text())
    assert all("site" not in entry for entry in report["hosts"])
    rows = table_rows(html, "hosts")
    assert len(rows) == 3 and all("site" not in row for row in rows)
    assert table_rows(html, "sites") == [] and "Per site" not in Page(html).h2
