"""The usage report as one self-contained HTML page: inline CSS and SVG, no script, no URL.

It is read on the bastion or on a laptop after the media crossed the gap, so it must
open from a file with nothing else around it.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from airlift.compliance import atomic_text
from airlift.usage import ALL_TIME, REMOVED_NOTE, REPORTED, WITH_ERRORS, fmt, has_figures

if TYPE_CHECKING:
    from airlift.usage import UsageAggregator

TOP_HOSTS = 25
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:left;vertical-align:top}td.n,th.n{text-align:right}
.reported{color:#176b2c}.failed,.exceeded{color:#b00020;font-weight:bold}
.unreachable,.warning{color:#a15c00;font-weight:bold}.warn{background:#fff4e0;
padding:.5em 1em;border-left:4px solid #a15c00}svg{display:block;margin:.3em 0 1em}
svg text{font-size:11px;fill:#333}.muted{color:#777}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def bar_chart(labels: Sequence[str], values: Sequence[float], horizontal: bool = False) -> str:
    """A plain SVG bar chart with each value written on its bar."""
    peak = max([*values, 0]) or 1
    if horizontal:
        row, label_w, bar_w = 18, 190, 420
        parts = [f'<svg width="{label_w + bar_w + 110}" height="{row * len(values) + 4}" '
                 f'role="img">']
        for i, (label, value) in enumerate(zip(labels, values, strict=True)):
            y, w = i * row + 2, max(1.0, bar_w * value / peak)
            parts.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">'
                         f'{_e(label[:30])}</text><rect x="{label_w}" y="{y}" width="{w:.1f}" '
                         f'height="{row - 4}" fill="#3b6ea5"/><text x="{label_w + w + 4:.1f}" '
                         f'y="{y + 12}">{_e(fmt(value))}</text>')
    else:
        col, height, top = 64, 160, 16
        parts = [f'<svg width="{col * len(values) + 10}" height="{height + top + 20}" role="img">']
        for i, (label, value) in enumerate(zip(labels, values, strict=True)):
            h = height * value / peak
            x, y = i * col + 8, top + height - h
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="{col - 14}" height="{h:.1f}" '
                         f'fill="#3b6ea5"/><text x="{x + (col - 14) / 2}" y="{y - 3:.1f}" '
                         f'text-anchor="middle">{_e(fmt(value))}</text><text '
                         f'x="{x + (col - 14) / 2}" y="{top + height + 14}" '
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
    return (f'<svg width="{width}" height="16" role="img"><rect width="{width}" height="16" '
            f'fill="#eee"/><rect width="{bar:.1f}" height="16" fill="{colour}"/>'
            f'<line x1="{100 * scale}" y1="0" x2="{100 * scale}" y2="16" stroke="#222"/>'
            f"{tick}</svg>")


def _top_hosts(agg: UsageAggregator) -> dict[tuple[str, str], list[tuple[float, str]]]:
    """The TOP_HOSTS largest all-time figures per (service, meter): bounded heaps."""
    heaps: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for entry in agg.iter_hosts():
        for svc in entry.get("services", ()):
            for meter, quantity in (svc.get("all_time") or {}).items():
                heap = heaps.setdefault((svc["name"], meter), [])
                item = (quantity, entry["host"])
                if len(heap) < TOP_HOSTS:
                    heapq.heappush(heap, item)
                else:
                    heapq.heappushpop(heap, item)
    return {key: sorted(heap, reverse=True) for key, heap in heaps.items()}


def _host_row(entry: Mapping[str, Any]) -> str:
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
                meters = ", ".join(f"{_e(m)} {_e(fmt(q))}" for m, q in svc["all_time"].items())
                lines.append(f"{_e(svc['name'])}{via}: {meters or 'no meters'}")
        if entry.get("note"):
            lines.append(f"<span class=muted>{_e(entry['note'])}</span>")
        detail = "<br>".join(lines)
    return (f"<tr><td>{_e(entry['host'])}</td><td class={status}>{status}</td>"
            f"<td>{_e(entry.get('collected_at') or '')}</td><td>{detail}</td></tr>\n")


def _services_not_collected(agg: UsageAggregator, out: TextIO) -> None:
    """Near the top, not only in the host table: their figures are missing from totals."""
    out.write("<h2>Services not collected</h2>\n<p>These hosts reported, but without "
              "these services' figures.</p>\n<table><tr><th>host</th><th>service</th>"
              "<th>error</th></tr>\n")
    for host, service, error in agg.service_problems():
        out.write(f"<tr><td>{_e(host)}</td><td>{_e(service)}</td>"
                  f"<td class=failed>{_e(error)}</td></tr>\n")
    out.write("</table>\n")


def write_html(agg: UsageAggregator, header: Mapping[str, Any], path: Path) -> None:
    run, counts = header["run"], header["hosts_summary"]
    with_errors = counts.get(WITH_ERRORS, 0)
    top = _top_hosts(agg)
    with atomic_text(path) as out:
        out.write(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                  f"<title>airlift usage report</title><style>{STYLE}</style></head><body>\n"
                  f"<h1>airlift usage report</h1>\n<p>Generated {_e(header['generated_at'])}; "
                  f"usage as of {_e(run.get('as_of'))}"
                  + (f"; run {_e(run['run_dir'])}" if run.get("run_dir") else "")
                  + f".</p>\n<p><b>{counts['expected']}</b> hosts expected: "
                  f"<span class=reported>{counts['reported']} reported</span>"
                  + (f" (<span class=failed>{with_errors} with services not collected"
                     f"</span>)" if with_errors else "") + ", "
                  f"<span class=failed>{counts['failed']} failed</span>, "
                  f"<span class=unreachable>{counts['unreachable']} unreachable</span>. "
                  f"Failed and unreachable hosts contribute no figures.</p>\n")
        for warning in header["warnings"]:
            out.write(f"<p class=warn>{_e(warning)}</p>\n")
        if with_errors:
            _services_not_collected(agg, out)
        if header["commitments"]:
            out.write("<h2>Commitment plans</h2>\n<table><tr><th>service</th><th>year</th>"
                      "<th class=n>purchased</th><th class=n>used</th><th class=n>% used</th>"
                      "<th class=n>projected year end</th><th class=n>% projected</th>"
                      "<th>status</th><th>used (bar) / projected (tick)</th></tr>\n")
            for row in header["commitments"]:
                out.write(f"<tr><td>{_e(row['service'])}</td><td>{row['year']}</td>"
                          f"<td class=n>{fmt(row['purchased'])}</td>"
                          f"<td class=n>{fmt(row['used'])}</td>"
                          f"<td class=n>{fmt(row['percent_used'])}</td>"
                          f"<td class=n>{fmt(row['projected_year_end'])}</td>"
                          f"<td class=n>{fmt(row['projected_percent'])}</td>"
                          f"<td class={row['status']}>{row['status']}"
                          + (f"<br><span class=muted>{len(row['months_missing'])} month(s) "
                             f"not collected</span>" if row["months_missing"] else "")
                          + "</td>"
                          f"<td>{_progress(row['percent_used'], row['projected_percent'])}"
                          f"</td></tr>\n")
            out.write("</table>\n")
        out.write("<h2>Usage per service and month</h2>\n")
        for service, entry in header["totals"].items():
            for meter, values in entry["meters"].items():
                unit = f" ({_e(values['billed_unit'])})" if values.get("billed_unit") else ""
                out.write(f"<h3>{_e(service)}: {_e(meter)}{unit}</h3>\n<p>All time: "
                          f"<b>{fmt(values['all_time'])}</b> from {values['all_time_hosts']} "
                          f"host(s).</p>\n")
                months = values["months"]
                out.write(bar_chart(list(months), list(months.values())) + "\n<table><tr>"
                          + "".join(f"<th class=n>{_e(m)}</th>" for m in months) + "</tr><tr>"
                          + "".join(f"<td class=n>{fmt(q)}</td>" for q in months.values())
                          + "</tr></table>\n")
        out.write("<h2>Usage per host (all time)</h2>\n")
        for (service, meter), rows in sorted(top.items()):
            out.write(f"<h3>{_e(service)}: {_e(meter)}</h3>\n")
            meters = header["totals"].get(service, {}).get("meters", {})
            hosts = meters.get(meter, {}).get("all_time_hosts", len(rows))
            shown = (f"<p class=muted>The {len(rows)} largest of {hosts} hosts; every host "
                     f"is in the table below.</p>\n")
            out.write(shown + bar_chart([h for _, h in rows], [q for q, _ in rows], True) + "\n")
        out.write("<h2>Hosts</h2>\n<table><tr><th>host</th><th>status</th><th>collected"
                  "</th><th>services (collected via): all-time figures, or reason</th></tr>\n")
        for entry in agg.iter_hosts():
            out.write(_host_row(entry))
        out.write(f"</table>\n<p class=muted>{_e(ALL_TIME)} figures are what each container's "
                  f"/records/usage-logs/ returned; monthly figures come from "
                  f"/records/usage-logs/MM/YYYY.</p>\n</body></html>\n")
