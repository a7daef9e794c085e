"""What the usage and compliance pages share: their style sheet (screen and print), the
provenance line, and escaping.

Both pages are opened from a file on the bastion or on a laptop after the media crossed
the gap, so everything is inline: no URL, no font, no script library.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

# Screen first; the print block keeps tables whole on A4 and Letter: rows never split,
# headers repeat on every page, wide tables shrink rather than lose columns. The page box
# is the printer's own paper (size:auto), so A4 and Letter both work; with 12 mm margins
# the content fits the narrower (A4, 186 mm) and the shorter (Letter, 255 mm) of the two.
STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em 2em;color:#222;
max-width:78em;line-height:1.35}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1.4em 0 .4em;
border-bottom:1px solid #ccc;padding-bottom:.15em}h3{font-size:1em;margin:1em 0 .3em}
p{margin:.35em 0}
table{border-collapse:collapse;margin:.4em 0 1.2em}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td.n{white-space:nowrap}
.prov{color:#555;font-size:.9em}
.banner{padding:.6em 1em;margin:.8em 0;border-left:6px solid;font-size:1.05em}
.banner.good{background:#e9f6ec;border-color:#176b2c}
.banner.bad{background:#fdecee;border-color:#b00020}
.banner.warnb{background:#fff4e0;border-color:#a15c00}
.ok,.reported,.PASS{color:#176b2c}
.failed,.exceeded,.FAIL,.UNREPORTED,.missing{color:#b00020;font-weight:bold}
.unreachable,.warning,.WARN,.partial{color:#a15c00;font-weight:bold}
.WAIVED{color:#4a4a9c}.muted{color:#777}.small{font-size:.85em}
.warn{background:#fff4e0;padding:.4em 1em;border-left:4px solid #a15c00}
svg{display:block;margin:.3em 0 1em;max-width:100%;height:auto}
svg text{font-size:11px;fill:#333}
.hosts{font-size:.85em;color:#444;overflow-wrap:anywhere}
@media print{
 @page{size:auto;margin:12mm}
 body{margin:0;max-width:none;font-size:9pt}
 h2{break-after:avoid}h3{break-after:avoid}
 table{max-width:100%;font-size:8pt}thead{display:table-header-group}
 tr,svg,.banner,.keep{break-inside:avoid}h4{break-after:avoid}
 td,th{padding:.1em .3em;overflow-wrap:break-word}
 .noprint{display:none !important}
 a{color:inherit;text-decoration:none}
}
"""


def e(value: object) -> str:
    """HTML-escaped text (attributes too)."""
    return escape(str(value), quote=True)


def head(title: str, extra_style: str = "") -> str:
    """The document up to and including <body>."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{e(title)}</title><style>{STYLE}{extra_style}</style></head><body>\n")


def provenance(generated: str | None, run: str | None, inventory: Iterable[str] = (),
               extra: str = "") -> str:
    """When, from which run and which inventory the page was made: one line, printed too."""
    sources = [str(source) for source in inventory if source]
    return (f'<p class=prov>Made {e(generated or "?")} from run <b>{e(run or "?")}</b>; '
            f"inventory {e(', '.join(sources)) if sources else '<i>not recorded</i>'}"
            f"{extra}.</p>\n")
