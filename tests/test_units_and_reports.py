"""Memory units (docker's form) and the streamed compliance report files."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from airlift import compliance, compliance_html, units


@pytest.mark.parametrize(("text", "expected"), [
    ("512m", 512 << 20), ("8g", 8 << 30), ("8G", 8 << 30), ("1.5g", int(1.5 * (1 << 30))),
    ("1024", 1024), ("64kb", 64 << 10), (2048, 2048),
])
def test_memory_parsed_like_docker(text, expected):
    assert units.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["8 gigs", "g8", "", "-1g", True])
def test_bad_memory_names_the_accepted_form(text):
    with pytest.raises(ValueError, match="invalid memory size"):
        units.parse_memory(text)


def result(check, status, subject="host"):
    return {"id": check, "title": check, "subject": subject, "status": status,
            "expected": "e", "observed": "o", "message": "m" if status != "PASS" else ""}


def test_reports_list_every_host_including_unreported(tmp_path):
    rows = [
        ("h1", [result("host.cores", "PASS"), result("host.cpu_clock", "WAIVED")]),
        ("h2", [result("host.cores", "FAIL"), result("service.memory", "WARN", "svc")]),
        ("h3", None),
    ]
    written = compliance.write_reports(tmp_path / "preflight", "run-1", lambda: iter(rows))
    report = json.loads((tmp_path / "preflight" / "compliance.json").read_text())
    assert report["schema"] == "airlift.compliance/1"
    assert {h: e["status"] for h, e in report["hosts"].items()} == {
        "h1": "PASS", "h2": "FAIL", "h3": "UNREPORTED"}
    assert report["summary"]["hosts"] == {"PASS": 1, "FAIL": 1, "UNREPORTED": 1}
    assert report["summary"]["checks"] == {"PASS": 1, "FAIL": 1, "WARN": 1, "WAIVED": 1}

    suites = ET.parse(tmp_path / "preflight" / "compliance.junit.xml").getroot()
    by_host = {suite.get("name"): suite for suite in suites}
    assert by_host["h2"].get("failures") == "1"
    assert by_host["h3"].get("errors") == "1"
    assert by_host["h3"].find("testcase/error") is not None
    assert by_host["h1"].find("testcase/skipped") is not None  # waived

    markdown = (tmp_path / "preflight" / "compliance.md").read_text()
    assert "| h3 | UNREPORTED |" in markdown
    assert "h2: host.cores [host] expected e, observed o" in markdown
    assert written["failures"][-1].startswith("h3: host did not report")
    assert not list((tmp_path / "preflight").glob("*.partial"))


def test_a_failed_write_leaves_no_report(tmp_path):
    def rows():
        yield "h1", [result("host.cores", "PASS")]
        raise RuntimeError("hostvars went away")

    calls = iter([[("h1", [result("host.cores", "PASS")])], rows()])
    with pytest.raises(RuntimeError):
        compliance.write_reports(tmp_path, "r", lambda: next(calls))
    assert not (tmp_path / "compliance.json").exists()
    assert not (tmp_path / "compliance.html").exists()
    assert not (tmp_path / "compliance.junit.xml").exists()
    assert not (tmp_path / "compliance.md").exists()
    assert not list(tmp_path.glob("*.partial"))


def test_waivers_read_from_results_written_before_the_waiver_field():
    """Results of an older airlift carry the waiver only in their message."""
    old = {**result("host.cpu_clock", "WAIVED"), "message": "waived until 2027-01-31: lab"}
    assert compliance_html.waiver_of(old) == ("2027-01-31", "lab")
    new = {**old, "waiver": {"expires": "2027-02-01", "justification": "renewed"}}
    assert compliance_html.waiver_of(new) == ("2027-02-01", "renewed")
