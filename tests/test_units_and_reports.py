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


def test_reports_show_each_bundle_image_by_tag_digest_and_id(tmp_path):
    digest, image_id = "sha256:" + "d" * 64, "sha256:" + "e" * 64
    images = [{"ref": f"reg.example/a/b:1.0@{digest}", "tag": "1.0", "digest": digest,
               "id": image_id, "pinned": digest, "archive": "images/x.tar", "size": 9}]
    compliance.write_reports(tmp_path, "run-1", lambda: iter([("h1", [])]), images=images)
    report = json.loads((tmp_path / "compliance.json").read_text())
    assert report["images"] == [{"ref": images[0]["ref"], "tag": "1.0", "digest": digest,
                                 "id": image_id, "pinned": digest, "pulled_from": None}]
    markdown = (tmp_path / "compliance.md").read_text()
    assert f"| reg.example/a/b:1.0@{digest} | 1.0 | {digest} | {image_id} |" in markdown
    page = (tmp_path / "compliance.html").read_text()
    assert (f"<tr><td>reg.example/a/b:1.0@{digest}</td><td>1.0</td><td><code>{digest}</code>"
            f"</td><td><code>{image_id}</code></td></tr>") in page


def test_a_failed_write_leaves_no_report(tmp_path):
    def rows():
        yield "h1", [result("host.cores", "PASS")]
        raise RuntimeError("hostvars went away")

    with pytest.raises(RuntimeError):
        compliance.write_reports(tmp_path, "r", rows)
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


def test_results_are_read_once_and_columns_include_checks_met_late(tmp_path):
    """One pass over the hosts: a check first met on the last host is still a column of
    the Markdown table and of the page's matrix, in the usual order."""
    calls = []

    def rows():
        calls.append(1)
        yield "h1", [result("host.cores", "PASS")]
        yield "h2", None
        yield "h3", [result("host.cores", "FAIL"), result("inventory.catalog", "PASS")]

    compliance.write_reports(tmp_path, "r", rows)
    assert calls == [1]
    lines = (tmp_path / "compliance.md").read_text().splitlines()
    assert lines[2] == "| host | status | inventory.catalog | host.cores |"
    assert lines[4:7] == ["| h1 | PASS | - | PASS |", "| h2 | UNREPORTED | UNREPORTED | "
                          "UNREPORTED |", "| h3 | FAIL | PASS | FAIL |"]
    html = (tmp_path / "compliance.html").read_text()
    assert '<tr class="r-PASS"><td class="h PASS">h1</td><td class=muted>-</td>' \
           "<td class=PASS>ok</td></tr>" in html
    assert '<td class=UNREPORTED colspan="2">not reported:' in html
