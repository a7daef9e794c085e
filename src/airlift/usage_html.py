"""The usage report as one self-contained HTML page: inline CSS and SVG, no script, no URL.

It is read on the bastion or on a laptop after the media crossed the gap, so it must
open from a file with nothing else around it. The first screen answers "what do I
report, and is anything wrong": one summary row per service and meter, then what needs
attention; the detail (months, per-site, per-host) follows. Hosts are read once from the
aggregator's spool: the host table goes to a temporary file while the figures above it
are counted, then the page is assembled and renamed into place.
"""

from __future__ import annotations

import datetime as dt
import functools
import heapq
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from airlift.compliance import atomic_text
from airlift.report_html import e, head, provenance
from airlift.timeutil import as_utc
from airlift.usage import (
    ALL_TIME,
    FAILED,
    REMOVED_NOTE,
    REPORTED,
    UNREACHABLE,
    WITH_ERRORS,
    fmt,
    has_figures,
)

if TYPE_CHECKING:
    from airlift.usage import UsageAggregator

TOP_HOSTS = 25
LISTED = 50  # hosts listed per kind of problem near the top; the host table has them all
_e = e
# The summary's eleven columns fit a 1280 px screen and a printed page: a little smaller
# type, long meter names wrap at their dots.
EXTRA_STYLE = "#summary{font-size:.9em}#summary td,#summary th{padding:.2em .4em}\n"
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
               "Dec")


def bar_chart(labels: Sequence[str], values: Sequence[float], horizontal: bool = False) -> str:
    """A plain SVG bar chart with each value written on its bar; it scales to the page."""
    peak = max([*values, 0]) or 1
    if horizontal:
        row, label_w, bar_w = 18, 190, 420
        width, height = label_w + bar_w + 110, row * len(values) + 4
        parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
                 f'role="img">']
        for i, (label, value) in enumerate(zip(labels, values, strict=True)):
            y, w = i * row + 2, max(1.0, bar_w * value / peak)
            parts.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">'
                         f'{_e(label[:30])}</text><rect x="{label_w}" y="{y}" width="{w:.1f}" '
                         f'height="{row - 4}" fill="#3b6ea5"/><text x="{label_w + w + 4:.1f}" '
                         f'y="{y + 12}">{_e(fmt(value))}</text>')
    else:
        # Wide enough for the longest figure written on a bar (16,486,000 is ten glyphs).
        widest = max((len(fmt(value)) for value in values), default=0)
        col, bars, top = max(64, round(6.5 * widest + 14)), 160, 16
        width, height = col * len(values) + 10, bars + top + 20
        parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
                 f'role="img">']
        for i, (label, value) in enumerate(zip(labels, values, strict=True)):
            h = bars * value / peak
            x, y = i * col + 8, top + bars - h
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="{col - 14}" height="{h:.1f}" '
                         f'fill="#3b6ea5"/><text x="{x + (col - 14) / 2}" y="{y - 3:.1f}" '
                         f'text-anchor="middle">{_e(fmt(value))}</text><text '
                         f'x="{x + (col - 14) / 2}" y="{top + bars + 14}" '
                         f'text-anchor="middle">{_e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _progress(used: float | None, projected: float | None) -> str:
    """Used share of a commitment as a bar, projected year end as a tick (capped at 150%)."""
    width = 300
    scale = width / 150
    bar = min(used or 0, 150) * scale
    colour = "#b00020" if (used or 0) >= 100 else "#3b6ea5"
    tick = ""
    if projected is not None:
        x = min(projected, 150) * scale
        tick = f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="16" stroke="#a15c00" stroke-width="2"/>'
    return (f'<svg width="{width}" height="16" viewBox="0 0 {width} 16" role="img">'
            f'<rect width="{width}" height="16" fill="#eee"/><rect width="{bar:.1f}" height="16" '
            f'fill="{colour}"/><line x1="{100 * scale}" y1="0" x2="{100 * scale}" y2="16" '
            f'stroke="#222"/>{tick}</svg>')


def billed_figure(values: Mapping[str, Any]) -> int | float | None:
    """The fleet's billed figure of a meter where the report carries one (Translator's
    numeric billedUnit, summed as `billed_all_time`); None otherwise, never a guess."""
    for key in ("billed_all_time", "billed"):
        value = values.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
    return None


@functools.cache
def _unit_rules() -> tuple[tuple[str, str], ...]:
    """(name ending, unit) from meter_units.yml: data, so a new meter needs no code."""
    data = yaml.safe_load(resources.files("airlift").joinpath("meter_units.yml")
                          .read_text(encoding="utf-8"))
    return tuple((str(rule["ends_with"]).lower(), str(rule["unit"]))
                 for rule in data["meter_units"])


def unit_of(meter: str) -> str:
    """The unit a meter counts, named for the reader ("units" when it is not known)."""
    last = meter.rsplit(".", 1)[-1].lower()
    return next((unit for ending, unit in _unit_rules() if last.endswith(ending)), "units")


def _meter(name: str) -> str:
    """A meter name that may wrap after its dots: Translator's 75-character name would
    otherwise push the summary's figures off the screen."""
    *parts, last = name.split(".")
    return "".join(f"{_e(part)}.<wbr>" for part in parts) + _e(last)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}%"


class _Pass:
    """What one read of the hosts yields: counts, short problem lists, per-site figures,
    the largest hosts per meter, and the host table (spooled to a temporary file)."""

    def __init__(self, agg: UsageAggregator, month: str, rows: TextIO) -> None:
        self.heaps: dict[tuple[str, str], list[tuple[float, str]]] = {}
        self.problems: dict[str, list[tuple[str, str]]] = {FAILED: [], UNREACHABLE: []}
        self.partial: list[tuple[str, str, str]] = []
        self.partial_hosts = 0
        self.not_collected: dict[str, int] = {}      # service -> hosts it failed on
        self.sites: dict[str, dict[str, Any]] = {}   # site -> counts and figures
        for entry in agg.iter_hosts():
            self._host(entry, month)
            rows.write(_host_row(entry, agg.has_sites))

    def _host(self, entry: Mapping[str, Any], month: str) -> None:
        host, status = entry["host"], entry["status"]
        site = self.sites.setdefault(entry.get("site") or "", {
            "hosts": 0, REPORTED: 0, FAILED: 0, UNREACHABLE: 0, WITH_ERRORS: 0, "meters": {}})
        site["hosts"] += 1
        site[status] = site.get(status, 0) + 1
        if status != REPORTED:
            listed = self.problems.setdefault(status, [])
            listed.append((host, entry.get("reason") or ""))
            del listed[LISTED + 1:]
            return
        errors = [svc for svc in entry["services"] if "error" in svc]
        if errors:
            site[WITH_ERRORS] += 1
            self.partial_hosts += 1
        for svc in errors:
            self.not_collected[svc["name"]] = self.not_collected.get(svc["name"], 0) + 1
            if len(self.partial) <= LISTED:
                self.partial.append((host, svc["name"], svc["error"]))
        for svc in entry["services"]:
            for meter, quantity in (svc.get("all_time") or {}).items():
                figures = site["meters"].setdefault((svc["name"], meter), [0, 0])
                figures[0] += quantity
                figures[1] += (svc.get("months") or {}).get(month, {}).get(meter, 0)
                heap = self.heaps.setdefault((svc["name"], meter), [])
                if len(heap) < TOP_HOSTS:
                    heapq.heappush(heap, (quantity, host))
                else:
                    heapq.heappushpop(heap, (quantity, host))


def _host_row(entry: Mapping[str, Any], with_site: bool) -> str:
    status = entry["status"]
    if status != REPORTED:
        detail = _e(entry["reason"])
    else:
        lines = []
        for svc in entry["services"]:
            via = f" <span class=muted>({_e(svc.get('collected_via', '?'))})</span>"
            if "error" in svc:
                lines.append(f"{_e(svc['name'])}{via}: <span class=failed>"
                             f"{_e(svc['error'])}</span>")
            elif not has_figures(svc):
                lines.append(f"{_e(svc['name'])}{via}: <span class=muted>"
                             f"{_e(REMOVED_NOTE)}</span>")
            else:
                billed = svc.get("billed_all_time") or {}
                meters = ", ".join(f"{_meter(m)} {_e(fmt(q))}"
                                   + (f" (billed {_e(fmt(billed[m]))})" if m in billed else "")
                                   for m, q in svc["all_time"].items())
                lines.append(f"{_e(svc['name'])}{via}: {meters or 'no meters'}")
        if entry.get("note"):
            lines.append(f"<span class=muted>{_e(entry['note'])}</span>")
        detail = "<br>".join(lines)
    shown = "partial" if status == REPORTED and any(
        "error" in svc for svc in entry["services"]) else status
    site = f"<td>{_e(entry.get('site') or '')}</td>" if with_site else ""
    return (f"<tr><td>{_e(entry['host'])}</td>{site}"
            f"<td class={shown}>{shown}</td>"
            f"<td>{_e(entry.get('collected_at') or '')}</td><td>{detail}</td></tr>\n")


def _month_of(header: Mapping[str, Any]) -> str:
    as_of = header["run"].get("as_of") or header["generated_at"]
    try:
        return as_utc(as_of).strftime("%Y-%m")
    except (TypeError, ValueError):
        return dt.datetime.now(dt.UTC).strftime("%Y-%m")


def _summary_table(header: Mapping[str, Any], seen: _Pass, month: str) -> str:
    """One row per service and meter: the figures an operator carries out."""
    counts = header["hosts_summary"]
    year = int(month[:4])
    plans = {row["service"]: row for row in header["commitments"] if row["year"] == year}
    rows = []
    for service, entry in header["totals"].items():
        plan = plans.get(service)
        for meter, values in entry["meters"].items():
            missing = counts[FAILED] + counts[UNREACHABLE] + seen.not_collected.get(service, 0)
            if plan and plan["status"] in ("exceeded", "warning"):
                status = plan["status"]
            elif missing:
                status = "missing"
            else:
                status = "ok"
            label = {"missing": "hosts missing"}.get(status, status)
            billed = billed_figure(values)
            unit = (f"<br><span class='muted small'>billed per {_e(values['billed_unit'])}"
                    "</span>" if values.get("billed_unit") else "")
            rows.append(
                f"<tr><td>{_e(service)}</td><td>{_meter(meter)}{unit}</td>"
                f"<td>{_e(unit_of(meter))}</td>"
                f"<td class=n>{fmt(values['all_time'])}</td>"
                f"<td class=n>{fmt(values['months'].get(month))}</td>"
                f"<td class=n>{fmt(billed) if billed is not None else ''}</td>"
                f"<td class=n>{_percent(plan['percent_used']) if plan else ''}</td>"
                f"<td class=n>{_percent(plan['projected_percent']) if plan else ''}</td>"
                f"<td class=n>{values['all_time_hosts']:,}</td>"
                f"<td class='n{' missing' if missing else ''}'>{missing:,}</td>"
                f"<td class={status}>{label}</td></tr>\n")
    if not rows:
        return "<p class=failed>No host gave any figure: there is nothing to report.</p>\n"
    return (f"<h2>What to report (as of {_e(header['run'].get('as_of'))})</h2>\n"
            "<table id=summary><thead><tr><th>service</th><th>meter</th><th>unit</th>"
            f"<th class=n>all time</th><th class=n>this month ({_e(month)})</th>"
            f"<th class=n>billed</th><th class=n>commitment {year} used</th>"
            "<th class=n>projected at year end</th><th class=n>hosts reported</th>"
            "<th class=n>hosts missing</th><th>status</th></tr></thead><tbody>\n"
            + "".join(rows) + "</tbody></table>\n<p class='muted small'>Hosts missing: hosts "
            "that gave no figures (failed or unreachable; they may or may not run the "
            "service) plus hosts where this service was not collected. Billed: the figure "
            "the service itself reports as billed (its numeric billedUnit, all time), where "
            "it reports one. Commitment: the service's use in the calendar year against its "
            "plan, counted on the billed figure where the service reports one.</p>\n")


def _banner(header: Mapping[str, Any], seen: _Pass) -> str:
    counts = header["hosts_summary"]
    issues = []
    if counts[FAILED]:
        issues.append(f"{counts[FAILED]:,} host(s) failed")
    if counts[UNREACHABLE]:
        issues.append(f"{counts[UNREACHABLE]:,} unreachable")
    if seen.partial_hosts:
        issues.append(f"{seen.partial_hosts:,} partly collected")
    plans = [row for row in header["commitments"] if row["status"] != "ok"]
    if plans:
        issues.append(f"{len(plans)} commitment(s) near or over")
    others = len(header["warnings"]) - sum(1 for row in plans if row.get("warning"))
    if others > 0:
        issues.append(f"{others} other warning(s)")
    reported = (f"{counts[REPORTED]:,} of {counts['expected']:,} host(s) reported")
    if not issues:
        return f"<p class='banner good'><b>Nothing needs attention:</b> {reported}.</p>\n"
    kind = "bad" if counts[FAILED] or counts[UNREACHABLE] or any(
        row["status"] == "exceeded" for row in plans) else "warnb"
    return (f"<p class='banner {kind}'><b>Needs attention:</b> {', '.join(issues)}; "
            f"{reported}. Failed and unreachable hosts contribute no figures.</p>\n")


def _attention(header: Mapping[str, Any], seen: _Pass) -> str:
    counts = header["hosts_summary"]
    parts = []
    for status, title in ((FAILED, "Hosts failed"), (UNREACHABLE, "Hosts unreachable")):
        listed = seen.problems.get(status) or []
        if not listed:
            continue
        more = counts[status] - min(len(listed), LISTED)
        parts.append(f"<h3 class={status}>{title} ({counts[status]:,})</h3>\n<table "
                     f"id={status}><thead><tr><th>host</th><th>reason</th></tr></thead><tbody>"
                     + "".join(f"<tr><td>{_e(host)}</td><td>{_e(reason)}</td></tr>"
                               for host, reason in listed[:LISTED])
                     + "</tbody></table>\n"
                     + (f"<p class=muted>... and {more:,} more in the host table.</p>\n"
                        if more > 0 else ""))
    if seen.partial:
        with_errors = counts.get(WITH_ERRORS, seen.partial_hosts)
        parts.append(f"<h3 class=partial>Services not collected ({with_errors:,} host(s) "
                     "partly collected)</h3>\n<p>These hosts reported, but without these "
                     "services' figures.</p>\n<table id=partial><thead><tr><th>host</th>"
                     "<th>service</th><th>error</th></tr></thead><tbody>"
                     + "".join(f"<tr><td>{_e(host)}</td><td>{_e(service)}</td>"
                               f"<td class=failed>{_e(error)}</td></tr>"
                               for host, service, error in seen.partial[:LISTED])
                     + "</tbody></table>\n"
                     + ("<p class=muted>... and more in the host table.</p>\n"
                        if len(seen.partial) > LISTED else ""))
    if header["warnings"]:
        parts.append("<h3 class=warning>Warnings</h3>\n"
                     + "".join(f"<p class=warn>{_e(w)}</p>\n" for w in header["warnings"]))
    if not parts:
        return ""
    return "<h2>Needs attention</h2>\n" + "".join(parts)


def _sites(header: Mapping[str, Any], seen: _Pass, month: str) -> str:
    named = sorted(site for site in seen.sites if site)
    if not named:
        return ""
    meters = [(service, meter) for service, entry in header["totals"].items()
              for meter in entry["meters"]]
    rows = []
    for site in [*named, *([""] if "" in seen.sites else [])]:
        data = seen.sites[site]
        label = _e(site) if site else "<i>no site group</i>"
        status = (f"<td class=n>{data['hosts']:,}</td><td class=n>{data[REPORTED]:,}</td>"
                  f"<td class='n{' partial' if data[WITH_ERRORS] else ''}'>"
                  f"{data[WITH_ERRORS]:,}</td><td class='n{' failed' if data[FAILED] else ''}'>"
                  f"{data[FAILED]:,}</td><td class='n{' unreachable' if data[UNREACHABLE] else ''}'"
                  f">{data[UNREACHABLE]:,}</td>")
        for index, (service, meter) in enumerate(meters or [("", "")]):
            all_time, this_month = data["meters"].get((service, meter), (None, None))
            rows.append(f"<tr><td>{label}</td>{status if index == 0 else '<td></td>' * 5}"
                        f"<td>{_e(service)}</td><td>{_meter(meter)}</td>"
                        f"<td class=n>{fmt(all_time)}</td><td class=n>{fmt(this_month)}</td>"
                        "</tr>\n")
    return ("<h2>Per site</h2>\n<table id=sites><thead><tr><th>site</th><th class=n>hosts</th>"
            "<th class=n>reported</th><th class=n>partly</th><th class=n>failed</th>"
            "<th class=n>unreachable</th><th>service</th><th>meter</th><th class=n>all time"
            f"</th><th class=n>this month ({_e(month)})</th></tr></thead><tbody>\n"
            + "".join(rows) + "</tbody></table>\n")


def _commitments(header: Mapping[str, Any]) -> str:
    if not header["commitments"]:
        return ""
    rows = []
    for row in header["commitments"]:
        gap = (f"<br><span class=muted>{len(row['months_missing'])} month(s) not collected"
               "</span>" if row["months_missing"] else "")
        rows.append(f"<tr><td>{_e(row['service'])}</td><td>{row['year']}</td>"
                    f"<td class=n>{fmt(row['purchased'])}</td><td class=n>{fmt(row['used'])}</td>"
                    f"<td class=n>{_percent(row['percent_used'])}</td>"
                    f"<td class=n>{fmt(row['projected_year_end'])}</td>"
                    f"<td class=n>{_percent(row['projected_percent'])}</td>"
                    f"<td>{_e(row.get('counted', 'quantity'))}</td>"
                    f"<td class={row['status']}>{row['status']}{gap}</td>"
                    f"<td>{_progress(row['percent_used'], row['projected_percent'])}</td></tr>\n")
    return ("<h2>Commitment plans</h2>\n<table id=commitments><thead><tr><th>service</th>"
            "<th>year</th><th class=n>purchased</th><th class=n>used</th><th class=n>used %</th>"
            "<th class=n>projected year end</th><th class=n>projected %</th>"
            "<th>counted on</th><th>status</th>"
            "<th>used (bar) / projected (tick) / 100% (line)</th></tr></thead><tbody>\n"
            + "".join(rows) + "</tbody></table>\n")


def _months_table(months: Mapping[str, int | float],
                  billed: Mapping[str, int | float] | None = None) -> str:
    """Months as one row per year (Jan to Dec and the year's sum): it fits a printed page.
    Where the service reports a billed figure, each year gets a second row of it."""
    years: dict[str, dict[int, int | float]] = {}
    for month, quantity in months.items():
        years.setdefault(month[:4], {})[int(month[5:7])] = quantity
    billed_years: dict[str, dict[int, int | float]] = {}
    for month, figure in (billed or {}).items():
        billed_years.setdefault(month[:4], {})[int(month[5:7])] = figure

    def row(label: str, values: Mapping[int, int | float]) -> str:
        return (f"<tr><td>{label}</td>"
                + "".join(f"<td class=n>{fmt(values.get(m))}</td>" for m in range(1, 13))
                + f"<td class=n><b>{fmt(sum(values.values()))}</b></td></tr>")

    rows = "".join(row(_e(year), values)
                   + (row(f"{_e(year)} billed", billed_years[year])
                      if year in billed_years else "")
                   for year, values in sorted(years.items()))
    return ("<table class=months><thead><tr><th>year</th>"
            + "".join(f"<th class=n>{name}</th>" for name in MONTH_NAMES)
            + "<th class=n>year</th></tr></thead><tbody>" + rows + "</tbody></table>\n")


def _detail(header: Mapping[str, Any], seen: _Pass) -> str:
    parts = ["<h2>Usage per service and month</h2>\n"]
    for service, entry in header["totals"].items():
        for meter, values in entry["meters"].items():
            unit = f" ({_e(values['billed_unit'])})" if values.get("billed_unit") else ""
            parts.append(f"<div class=keep><h3>{_e(service)}: {_e(meter)}{unit}</h3>\n<p>All "
                         f"time: <b>{fmt(values['all_time'])}</b> {_e(unit_of(meter))} from "
                         f"{values['all_time_hosts']:,} host(s).</p>\n")
            billed = billed_figure(values)
            if billed is not None:
                parts.append(f"<p class=billed>Billed all time: <b>{fmt(billed)}</b>, the "
                             "service's billedUnit summed over "
                             f"{values.get('billed_hosts', 0):,} host(s); commitments count "
                             "this figure.</p>\n")
            months = values["months"]
            if months:
                parts.append(bar_chart(list(months), list(months.values())) + "\n"
                             + _months_table(months, values.get("billed_months")))
            parts.append("</div>\n")
    parts.append("<h2>Usage per host (all time)</h2>\n")
    for (service, meter), heap in sorted(seen.heaps.items()):
        rows = sorted(heap, reverse=True)
        meters = header["totals"].get(service, {}).get("meters", {})
        hosts = meters.get(meter, {}).get("all_time_hosts", len(rows))
        parts.append(f"<div class=keep><h4>{_e(service)}: {_e(meter)}</h4>\n<p class=muted>"
                     f"The {len(rows)} largest of {hosts:,} hosts; every host is in the table "
                     "below.</p>\n"
                     + bar_chart([h for _, h in rows], [q for q, _ in rows], True) + "</div>\n")
    return "".join(parts)


def _run_label(run: Mapping[str, Any]) -> str:
    if run.get("merged_from"):
        return f"merge of {len(run['merged_from'])} report(s)"
    return str(run.get("run_dir") or run.get("playbook") or "?")


def write_html(agg: UsageAggregator, header: Mapping[str, Any], path: Path) -> None:
    run = header["run"]
    month = _month_of(header)
    inventory = run.get("inventory") or sorted({
        source for item in run.get("merged_from") or [] for source in item.get("inventory") or []})
    with (tempfile.TemporaryFile("w+", encoding="utf-8", prefix="airlift-usage-",
                                 suffix=".html") as rows, atomic_text(path) as out):
        seen = _Pass(agg, month, rows)
        playbook = f"; playbook {_e(run['playbook'])}" if run.get("playbook") else ""
        out.write(head("airlift usage report", EXTRA_STYLE)
                  + "<h1>airlift usage report</h1>\n"
                  + provenance(header["generated_at"], _run_label(run), inventory,
                               f"{playbook}; usage as of {_e(run.get('as_of'))}"))
        out.write(_banner(header, seen))
        out.write(_summary_table(header, seen, month))
        out.write(_attention(header, seen))
        out.write(_sites(header, seen, month))
        out.write(_commitments(header))
        out.write(_detail(header, seen))
        out.write("<h2>Hosts</h2>\n<table id=hosts><thead><tr><th>host</th>"
                  + ("<th>site</th>" if agg.has_sites else "")
                  + "<th>status</th><th>collected</th><th>services (collected via): all-time "
                  "figures, or reason</th></tr></thead><tbody>\n")
        rows.seek(0)
        shutil.copyfileobj(rows, out)
        out.write(f"</tbody></table>\n<p class=muted>{_e(ALL_TIME)} figures are what each "
                  "container's /records/usage-logs/ returned; monthly figures come from "
                  "/records/usage-logs/MM/YYYY.</p>\n</body></html>\n")
