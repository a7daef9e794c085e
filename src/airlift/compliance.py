"""The fleet compliance report: JSON, JUnit XML, a Markdown table and an HTML page for a
person (airlift.compliance_html), written host by host.

Every expected host gets an entry: hosts that did not report (unreachable, or failed
before their checks ran) are listed as UNREPORTED and as JUnit errors, never dropped.
Files are written to a temporary name and renamed, so a report is complete or absent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape, quoteattr

from airlift.checks import FAIL, PASS, WAIVED, WARN, summary
from airlift.compliance_html import UNREPORTED, CompliancePage, sort_checks

SCHEMA = "airlift.compliance/1"
NO_RESULT = "host did not report: unreachable, or failed before its checks ran"
STATUS_ORDER = {FAIL: 0, UNREPORTED: 0, WARN: 1, WAIVED: 2, PASS: 3}

HostResults = tuple[str, list[dict[str, Any]] | None]


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[TextIO]:
    """Write to PATH.partial, rename on success: readers never see half a report."""
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def host_status(results: list[dict[str, Any]] | None) -> str:
    if results is None:
        return UNREPORTED
    return FAIL if any(item["status"] == FAIL for item in results) else PASS


def _cell(results: list[dict[str, Any]], check: str) -> str:
    statuses = [item["status"] for item in results if item["id"] == check]
    if not statuses:
        return "-"
    worst = min(statuses, key=lambda status: STATUS_ORDER.get(status, 9))
    return worst if len(statuses) == 1 else f"{worst} ({len(statuses)})"


IMAGE_FIELDS = ("ref", "tag", "digest", "id", "pinned", "pulled_from")


def write_reports(dest: Path, run_id: str, hosts: Callable[[], Iterable[HostResults]],
                  *, inventory: Iterable[str] = (),
                  images: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Write the four formats in one pass over HOSTS (called once).

    The checks (the Markdown and HTML table columns) are known only when every host is
    in, so both tables spool compact rows to a temporary file and are rendered at the end.
    INVENTORY (the run's inventory sources) is named on the HTML page. `images` are the
    bundle's (its manifest): the report names what the hosts run by tag, registry digest
    and image ID, so an audit needs no other file.
    """
    images = [{key: image.get(key) for key in IMAGE_FIELDS} for image in images]
    dest.mkdir(parents=True, exist_ok=True)
    totals = {PASS: 0, FAIL: 0, WARN: 0, WAIVED: 0}
    host_counts = {PASS: 0, FAIL: 0, UNREPORTED: 0}
    failures: list[str] = []
    seen: dict[str, None] = {}  # check ids, in the order met
    generated = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    paths = {"json": dest / "compliance.json", "junit": dest / "compliance.junit.xml",
             "markdown": dest / "compliance.md", "html": dest / "compliance.html"}
    with (atomic_text(paths["json"]) as js, atomic_text(paths["junit"]) as junit,
          atomic_text(paths["markdown"]) as md, atomic_text(paths["html"]) as html,
          CompliancePage(run_id, generated, inventory, images) as page,
          tempfile.TemporaryFile("w+", encoding="utf-8", prefix="airlift-compliance-",
                                 suffix=".jsonl") as md_rows):
        js.write(f'{{"schema": "{SCHEMA}", "run_id": {json.dumps(run_id)}, '
                 f'"generated": "{generated}", "hosts": {{')
        junit.write('<?xml version="1.0" encoding="UTF-8"?>\n'
                    '<testsuites name="airlift preflight">\n')
        for index, (host, results) in enumerate(hosts()):
            status = host_status(results)
            host_counts[status] += 1
            for key, value in summary(results or []).items():
                totals[key] += value
            if results is None:
                failures.append(f"{host}: {NO_RESULT}")
            else:
                failures.extend(f"{host}: {item['id']} [{item['subject']}] expected "
                                f"{item['expected']}, observed {item['observed']}"
                                for item in results if item["status"] == FAIL)
            entry = {"status": status, "results": results or [],
                     **({"reason": NO_RESULT} if results is None else {})}
            js.write(("," if index else "") + f"\n{json.dumps(host)}: {json.dumps(entry)}")
            _write_suite(junit, host, results)
            checks = {item["id"]: None for item in results or []}
            seen.update(checks)
            md_rows.write(json.dumps([host, status, None if results is None else
                                      {check: _cell(results, check) for check in checks}])
                          + "\n")
            page.add(host, status, results, NO_RESULT)
        check_ids = sort_checks(seen)
        overall = {"hosts": host_counts, "checks": totals}
        js.write(f'\n}}, "images": {json.dumps(images)}, "summary": {json.dumps(overall)}}}\n')
        junit.write("</testsuites>\n")
        md.write(f"# airlift preflight: run {run_id}\n\n")
        md.write("| host | status | " + " | ".join(check_ids) + " |\n")
        md.write("|---|---|" + "---|" * len(check_ids) + "\n")
        md_rows.seek(0)
        for line in md_rows:
            host, status, cells = json.loads(line)
            shown = [UNREPORTED if cells is None else cells.get(check, "-")
                     for check in check_ids]
            md.write(f"| {host} | {status} | " + " | ".join(shown) + " |\n")
        md.write(f"\nHosts: {host_counts[PASS]} passed, {host_counts[FAIL]} failed, "
                 f"{host_counts[UNREPORTED]} unreported. Checks: "
                 + ", ".join(f"{count} {status}" for status, count in totals.items()) + ".\n")
        if images:
            md.write("\n## Images\n\n| image | tag | digest | image ID |\n|---|---|---|---|\n"
                     + "".join(f"| {image['ref']} | {image['tag'] or '-'} | "
                               f"{image['digest'] or '-'} | {image['id']} |\n"
                               for image in images))
        if failures:
            md.write("\n## Failures\n\n" + "".join(f"- {line}\n" for line in failures))
        page.write(html)
    return {"files": {kind: str(path) for kind, path in paths.items()},
            "summary": overall, "failures": failures}


def _write_suite(out: TextIO, host: str, results: list[dict[str, Any]] | None) -> None:
    if results is None:
        out.write(f'  <testsuite name={quoteattr(host)} tests="1" failures="0" errors="1" '
                  f'skipped="0">\n    <testcase classname={quoteattr(host)} name="host.reachable">'
                  f'<error message={quoteattr(NO_RESULT)}/></testcase>\n  </testsuite>\n')
        return
    counts = summary(results)
    out.write(f'  <testsuite name={quoteattr(host)} tests="{len(results)}" '
              f'failures="{counts[FAIL]}" errors="0" skipped="{counts[WAIVED]}">\n')
    for item in results:
        name = quoteattr(f"{item['id']} [{item['subject']}]")
        detail = (f"expected {item['expected']}, observed {item['observed']}"
                  + (f": {item['message']}" if item["message"] else ""))
        out.write(f"    <testcase classname={quoteattr(host)} name={name}>")
        if item["status"] == FAIL:
            out.write(f"<failure message={quoteattr(detail)}/>")
        elif item["status"] == WAIVED:
            out.write(f"<skipped message={quoteattr(detail)}/>")
        elif item["status"] == WARN:
            out.write(f"<system-out>{escape('WARN: ' + detail)}</system-out>")
        out.write("</testcase>\n")
    out.write("  </testsuite>\n")


def from_results(expected: Iterable[str], results: Mapping[str, Any],
                 ) -> Callable[[], Iterator[HostResults]]:
    """Rows from results evaluated once for the run, keyed by host (None: did not report)."""
    hosts = list(expected)

    def rows() -> Iterator[HostResults]:
        for host in hosts:
            found = results.get(host)
            yield host, (list(found) if found is not None else None)

    return rows


def from_hostvars(expected: Iterable[str], hostvars: Mapping[str, Any],
                  results_var: str) -> Callable[[], Iterator[HostResults]]:
    """Adapter over Ansible's hostvars: the one place that reaches into them."""
    hosts = list(expected)

    def rows() -> Iterator[HostResults]:
        for host in hosts:
            results = hostvars[host].get(results_var) if host in hostvars else None
            yield host, (list(results) if results is not None else None)

    return rows
