"""The compliance report as a page for a person: fleet summary, failures by check, waivers,
then the full matrix, filterable by status with a few lines of inline script.

The compliance writer feeds it one host at a time in the same pass that writes the JSON,
JUnit and Markdown files. The matrix rows go to a temporary spool file as they come, as
one compact JSON line each (the checks a fleet runs are known only at the end, and they
are the matrix's columns); they are rendered as HTML rows when the page is written;
what goes above them (counts, failures grouped by check, waivers) is small: the failures
of one check with one fix are one group, with its hosts and the range of what they
observed (disk, memory, cores differ per host), not a row per observed value. The page is assembled
at the end and renamed into place, so it is complete or absent like the other files.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from airlift.checks import FAIL, PASS, WAIVED, WARN
from airlift.report_html import e, head, provenance

UNREPORTED = "UNREPORTED"  # a host that did not report (airlift.compliance uses it too)
# Short cell labels keep twenty check columns on an A4 page.
CELL = {PASS: "ok", FAIL: "FAIL", WARN: "warn", WAIVED: "waived"}
HOSTS_SHOWN = 20  # host names listed per group; the matrix below has them all
OBSERVED_KEPT = 200  # distinct observed values kept per group: enough for a range
_WAIVED_UNTIL = re.compile(r"^waived until (\d{4}-\d{2}-\d{2}): (.*)$", re.DOTALL)
_LEADING_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(.*)$")

EXTRA_STYLE = """
td code{word-break:break-all;font-size:.85em}
#matrix th.c{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap;
font-weight:normal;font-size:.85em;padding:.4em .1em}
#matrix td{text-align:center;padding:.1em .3em;font-size:.85em}
#matrix td.h{text-align:left;white-space:nowrap}
#matrix td.FAIL{background:#fdecee}#matrix td.WARN{background:#fff4e0}
#matrix td.WAIVED{background:#eeeefa}#matrix td.UNREPORTED{background:#fdecee;text-align:left}
#matrix.only-FAIL tbody tr:not(.r-FAIL),#matrix.only-UNREPORTED tbody tr:not(.r-UNREPORTED),
#matrix.only-WARN tbody tr:not(.r-WARN),#matrix.only-WAIVED tbody tr:not(.r-WAIVED),
#matrix.only-PASS tbody tr:not(.r-PASS){display:none}
#matrix td.h.PASS{font-weight:normal}
.filter label{margin-right:1em;white-space:nowrap}
"""

SCRIPT = """<script>
for (const input of document.querySelectorAll('.filter input')) {
  input.addEventListener('change', () => {
    document.getElementById('matrix').className = input.value ? 'only-' + input.value : '';
  });
}
</script>
"""


def waiver_of(item: Mapping[str, Any]) -> tuple[str | None, str]:
    """(expiry date, justification) of a waived result, from its structured `waiver`
    field, or read from its message in results written before that field existed."""
    waiver = item.get("waiver")
    if isinstance(waiver, Mapping):
        return (str(waiver["expires"]) if waiver.get("expires") else None,
                str(waiver.get("justification") or ""))
    match = _WAIVED_UNTIL.match(str(item.get("message") or ""))
    return (match[1], match[2]) if match else (None, str(item.get("message") or ""))


def sort_checks(checks: Iterable[str]) -> list[str]:
    """Check ids in column order: the inventory's first, then by name."""
    return sorted(checks, key=lambda check: (not check.startswith("inventory."), check))


def spread(values: Mapping[str, int]) -> str:
    """Observed values of a group for a reader: the one value, the range when each starts
    with a number in one unit (20 GB to 38 GB), else the first few; with the count."""
    if len(values) == 1:
        return e(next(iter(values)))
    parsed = [(match[1], match[2]) for value in values
              if (match := _LEADING_NUMBER.match(value))]
    if len(parsed) == len(values) and len({unit for _, unit in parsed}) == 1:
        numbers = sorted(parsed, key=lambda pair: float(pair[0]))
        low, high = (f"{number} {unit}".strip() for number, unit in (numbers[0], numbers[-1]))
        shown = f"{e(low)} to {e(high)}"
    else:
        first = sorted(values, key=lambda value: -values[value])[:3]
        shown = ", ".join(e(value) for value in first) + (", ..." if len(values) > 3 else "")
    more = "+" if len(values) >= OBSERVED_KEPT else ""
    return f"{shown} <span class=muted>({len(values):,}{more} distinct values)</span>"


class CompliancePage:
    """Accumulates the page while the writer streams hosts; `write` puts it in place."""

    def __init__(self, run_id: str, generated: str, inventory: Iterable[str] = (),
                 images: Iterable[Mapping[str, Any]] = ()) -> None:
        self.run_id, self.generated = run_id, generated
        self.images = list(images)  # the bundle's: what the hosts run, by tag/digest/ID
        self.check_ids: list[str] = []  # the matrix's columns, known once every host is in
        self.inventory = list(inventory)
        self.titles: dict[str, str] = {}
        self.by_check: dict[str, dict[str, int]] = {}
        self.hosts = {PASS: 0, FAIL: 0, UNREPORTED: 0}
        self.checks = {PASS: 0, FAIL: 0, WARN: 0, WAIVED: 0}
        # (status, check, subject, fix) -> host names, and the values they observed
        self.groups: dict[tuple[str, ...], list[str]] = {}
        self.observed: dict[tuple[str, ...], dict[str, dict[str, int]]] = {}
        self.unreported: dict[str, list[str]] = {}  # reason -> host names
        self.waivers: dict[tuple[str, ...], list[str]] = {}
        self._rows = tempfile.TemporaryFile("w+", encoding="utf-8",  # noqa: SIM115
                                            prefix="airlift-compliance-", suffix=".jsonl")

    def close(self) -> None:
        self._rows.close()

    def __enter__(self) -> CompliancePage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, host: str, status: str, results: list[dict[str, Any]] | None,
            reason: str = "") -> None:
        """One host's results (None: it did not report) and its overall status."""
        self.hosts[status] = self.hosts.get(status, 0) + 1
        if results is None:
            self.unreported.setdefault(reason, []).append(host)
            self._rows.write(json.dumps([host, UNREPORTED, reason]) + "\n")
            return
        cells: dict[str, list[str]] = {}
        for item in results:
            state, check = item["status"], item["id"]
            self.titles.setdefault(check, str(item.get("title") or check))
            self.checks[state] = self.checks.get(state, 0) + 1
            self.by_check.setdefault(check, {PASS: 0, FAIL: 0, WARN: 0, WAIVED: 0})
            self.by_check[check][state] = self.by_check[check].get(state, 0) + 1
            cells.setdefault(check, []).append(state)
            if state in (FAIL, WARN):
                key = (state, check, str(item["subject"]), str(item.get("message") or ""))
                self.groups.setdefault(key, []).append(host)
                seen = self.observed.setdefault(key, {"expected": {}, "observed": {}})
                for field in ("expected", "observed"):
                    values, value = seen[field], str(item[field])
                    if value in values or len(values) < OBSERVED_KEPT:
                        values[value] = values.get(value, 0) + 1
            elif state == WAIVED:
                expires, why = waiver_of(item)
                key = (check, str(item["subject"]), expires or "", why)
                self.waivers.setdefault(key, []).append(host)
        flags = "".join(f" r-{state}" for state in (WARN, WAIVED)
                        if any(state in states for states in cells.values()))
        worst = {check: [next(s for s in (FAIL, WARN, WAIVED, PASS) if s in states)
                         if all(s in CELL for s in states) else states[0], len(states)]
                 for check, states in cells.items()}
        self._rows.write(json.dumps([host, status, flags, worst]) + "\n")

    def _matrix_row(self, line: str) -> str:
        """A spooled host as its matrix row, one cell per check in the final column order."""
        host, status, *rest = json.loads(line)
        if status == UNREPORTED:
            return (f'<tr class="r-UNREPORTED"><td class="h UNREPORTED">{e(host)}</td>'
                    f'<td class=UNREPORTED colspan="{len(self.check_ids) or 1}">'
                    f"not reported: {e(rest[0])}</td></tr>\n")
        flags, worst = rest
        row = [f'<tr class="r-{status}{flags}"><td class="h {status}">{e(host)}</td>']
        for check in self.check_ids:
            if check not in worst:
                row.append("<td class=muted>-</td>")
                continue
            state, count = worst[check]
            shown = f" ({count})" if count > 1 else ""
            row.append(f"<td class={e(state)}>{e(CELL.get(state, state))}{shown}</td>")
        return "".join(row) + "</tr>\n"

    # -- the page --------------------------------------------------------------------------

    def write(self, out: TextIO, today: dt.date | None = None) -> None:
        """The whole page, summary first, then the spooled matrix rows (the caller writes
        OUT under a temporary name and renames it)."""
        today = today or dt.date.fromisoformat(self.generated[:10])
        self.check_ids = sort_checks(self.by_check)
        out.write(head(f"airlift compliance: run {self.run_id}", EXTRA_STYLE))
        out.write("<h1>airlift preflight compliance</h1>\n"
                  + provenance(self.generated, self.run_id, self.inventory))
        out.write(self._banner())
        fleet, per_check = self._summary()
        out.write(fleet)
        out.write(self._failures())
        out.write(self._waivers(today))
        out.write(self._images())
        out.write(per_check)
        out.write(self._matrix_head())
        self._rows.seek(0)
        for line in self._rows:
            out.write(self._matrix_row(line))
        out.write("</tbody></table>\n" + SCRIPT + "</body></html>\n")

    def _banner(self) -> str:
        total = sum(self.hosts.values())
        failed, missing = self.hosts[FAIL], self.hosts[UNREPORTED]
        if not failed and not missing:
            extra = (f"; {self.checks[WARN]} warning(s) and {self.checks[WAIVED]} waived "
                     "check(s) below") if self.checks[WARN] or self.checks[WAIVED] else ""
            return f"<p class='banner good'>All {total} host(s) passed{extra}.</p>\n"
        return (f"<p class='banner bad'><b>Needs attention:</b> {failed} of {total} host(s) "
                f"failed, {missing} did not report. Fix the failures below and run "
                "preflight again.</p>\n")

    def _summary(self) -> tuple[str, str]:
        """The fleet's counts (top of the page) and the counts per check (further down)."""
        hosts = "".join(f"<td class='n{' ' + s if self.hosts[s] and s != PASS else ''}'>"
                        f"{self.hosts[s]:,}</td>" for s in (PASS, FAIL, UNREPORTED))
        checks = "".join(f"<td class=n><b>{self.checks[s]:,}</b></td>"
                         for s in (PASS, FAIL, WARN, WAIVED))
        rows = []
        for check in self.check_ids:
            counts = self.by_check.get(check, {})
            cells = "".join(f"<td class='n{' ' + s if counts.get(s) and s != PASS else ''}'>"
                            f"{counts.get(s, 0):,}</td>" for s in (PASS, FAIL, WARN, WAIVED))
            rows.append(f"<tr><td>{e(check)}</td><td>{e(self.titles.get(check, ''))}</td>"
                        f"{cells}</tr>\n")
        heads = "<th class=n>PASS</th><th class=n>FAIL</th><th class=n>WARN</th>" \
                "<th class=n>WAIVED</th>"
        return ("<h2>Fleet summary</h2>\n<table id=hosts-summary><thead><tr><th>hosts</th>"
                "<th class=n>passed</th><th class=n>failed</th><th class=n>unreported</th>"
                f"</tr></thead><tbody><tr><td>{sum(self.hosts.values()):,}</td>{hosts}</tr>"
                f"</tbody></table>\n<table id=checks-total><thead><tr><th>checks</th>{heads}"
                f"</tr></thead><tbody><tr><td>all hosts</td>{checks}</tr></tbody></table>\n",
                "<h2>Checks by status</h2>\n<table id=checks-summary><thead><tr><th>check</th>"
                f"<th>what it checks</th>{heads}</tr></thead><tbody>"
                f"<tr><td><b>all checks</b></td><td></td>{checks}</tr>\n"
                + "".join(rows) + "</tbody></table>\n")

    def _host_list(self, hosts: list[str]) -> str:
        if len(hosts) > HOSTS_SHOWN and len(hosts) == self.hosts[PASS] + self.hosts[FAIL]:
            return f"<b>every reported host</b> ({len(hosts):,})"
        shown = ", ".join(e(host) for host in hosts[:HOSTS_SHOWN])
        more = (f" <i>and {len(hosts) - HOSTS_SHOWN:,} more (filter the matrix by status)</i>"
                if len(hosts) > HOSTS_SHOWN else "")
        return f"<b>{len(hosts):,}</b> host(s): <span class=hosts>{shown}</span>{more}"

    def _failures(self) -> str:
        parts = []
        for state, heading, table in ((FAIL, "Failures by check", "failures"),
                                      (WARN, "Warnings by check", "warnings")):
            rows = []
            if state == FAIL:
                rows += [f"<tr><td class=UNREPORTED>host did not report</td>"
                         f"<td>host</td><td>{e(reason)}</td><td>check that it is reachable "
                         "(inventory address, SSH, Python), then run preflight again</td>"
                         f"<td>{self._host_list(hosts)}</td></tr>\n"
                         for reason, hosts in sorted(self.unreported.items())]
            groups = sorted(((key, hosts) for key, hosts in self.groups.items()
                             if key[0] == state), key=lambda kv: (kv[0][1], -len(kv[1])))
            rows += [f"<tr><td class={state}>{e(check)}<br><span class='muted small'>"
                     f"{e(self.titles.get(check, ''))}</span></td><td>{e(subject)}</td>"
                     f"<td>expected {spread(self.observed[key]['expected'])}<br>observed "
                     f"{spread(self.observed[key]['observed'])}</td>"
                     f"<td>{e(message) or '<span class=muted>-</span>'}</td>"
                     f"<td>{self._host_list(hosts)}</td></tr>\n"
                     for key, hosts in groups for (_, check, subject, message) in [key]]
            if rows:
                parts.append(f"<h2>{heading}</h2>\n<table id={table}><thead><tr><th>check</th>"
                             "<th>subject</th><th>expected / observed</th><th>fix</th>"
                             "<th>hosts</th></tr></thead><tbody>\n" + "".join(rows)
                             + "</tbody></table>\n")
            elif state == FAIL:
                parts.append(f"<h2>{heading}</h2>\n<p class=ok>No check failed and every "
                             "host reported.</p>\n")
        return "".join(parts)

    def _waivers(self, today: dt.date) -> str:
        if not self.waivers:
            return "<h2>Waivers</h2>\n<p class=muted>No check was waived.</p>\n"
        rows = []
        for (check, subject, expires, why), hosts in sorted(
                self.waivers.items(), key=lambda kv: (kv[0][2] or "9999", kv[0][0])):
            try:
                days = (dt.date.fromisoformat(expires) - today).days
                left = f"<td class='n{' warning' if days <= 30 else ''}'>{days:,}</td>"
            except ValueError:
                left = "<td class=n>?</td>"
            rows.append(f"<tr><td>{e(check)}</td><td>{e(subject)}</td><td>{e(why)}</td>"
                        f"<td>{e(expires or '?')}</td>{left}<td>{self._host_list(hosts)}</td>"
                        "</tr>\n")
        return ("<h2>Waivers</h2>\n<table id=waivers><thead><tr><th>check</th><th>subject</th>"
                "<th>justification</th><th>expires</th><th class=n>days left</th><th>hosts</th>"
                "</tr></thead><tbody>\n" + "".join(rows) + "</tbody></table>\n")

    def _images(self) -> str:
        """The bundle's images by tag, registry digest and image ID (an audit's question:
        which image exactly)."""
        if not self.images:
            return ""
        rows = "".join(f"<tr><td>{e(image.get('ref'))}</td><td>{e(image.get('tag') or '-')}"
                       f"</td><td><code>{e(image.get('digest') or '-')}</code></td>"
                       f"<td><code>{e(image.get('id'))}</code></td></tr>\n"
                       for image in self.images)
        return ("<h2>Images in the bundle</h2>\n<table><thead><tr><th>image</th><th>tag</th>"
                "<th>digest</th><th>image ID</th></tr></thead><tbody>\n" + rows
                + "</tbody></table>\n")

    def _matrix_head(self) -> str:
        options = [("", "all"), (FAIL, "failed"), (UNREPORTED, "unreported"),
                   (WARN, "with warnings"), (WAIVED, "with waivers"), (PASS, "passed")]
        radios = "".join(f'<label><input type=radio name=show value="{value}"'
                         f'{" checked" if not value else ""}> {label}</label>'
                         for value, label in options)
        columns = "".join(f'<th class=c title="{e(self.titles.get(c, c))}">{e(c)}</th>'
                          for c in self.check_ids)
        return ("<h2>All hosts and checks</h2>\n<p class='filter noprint'>Show: "
                f"{radios}</p>\n<p class='muted small'>ok = PASS, warn = WARN, waived = "
                "WAIVED, - = not checked on this host; (n) = n subjects, the worst shown."
                "</p>\n<table id=matrix><thead><tr><th>host</th>"
                f"{columns}</tr></thead><tbody>\n")
