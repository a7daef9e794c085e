"""The report pages read as a reader reads them: each figure under its heading, each cell
under its column.

Checking that a bare number occurs anywhere in the page passes on a date, a host count
or another service's figure; this reads the one after "All time:" under each
"<service>: <meter>" heading of the fleet section. Stdlib only: the molecule verifier
imports it too.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_HEADING = re.compile(r"^(?P<service>[^:]+): (?P<meter>.+?)(?: \([^()]*\))?$")


def _number(text: str) -> int | float | None:
    """A figure as usage.fmt writes it (1,234 or 1,234.50; '-' when there is none)."""
    text = text.strip().replace(",", "")
    if text == "-":
        return None
    value = float(text)
    return int(value) if value.is_integer() else value


class _AllTimeFigures(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.figures: dict[tuple[str, str], int | float | None] = {}
        self._heading: tuple[str, str] | None = None
        self._h3: list[str] | None = None
        self._p: list[str] | None = None
        self._b: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "h3":
            self._h3, self._heading = [], None
        elif tag == "p":
            self._p = []
        elif tag == "b" and self._p is not None and "".join(self._p).strip() == "All time:":
            self._b = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h3" and self._h3 is not None:
            match = _HEADING.match(" ".join("".join(self._h3).split()))
            self._heading = (match["service"], match["meter"]) if match else None
            self._h3 = None
        elif tag == "b" and self._b is not None:
            if self._heading is None:
                raise AssertionError("an All time figure under no service: meter heading")
            if self._heading in self.figures:
                raise AssertionError(f"two All time figures for {self._heading}")
            self.figures[self._heading] = _number("".join(self._b))
            self._b = None
        elif tag == "p":
            self._p = None

    def handle_data(self, data: str) -> None:
        for parts in (self._h3, self._p, self._b):
            if parts is not None:
                parts.append(data)


def all_time_figures(html: str) -> dict[tuple[str, str], int | float | None]:
    """{(service, meter): the fleet's all-time figure} as the page shows it."""
    parser = _AllTimeFigures()
    parser.feed(html)
    parser.close()
    return parser.figures


class _Table(HTMLParser):
    """The rows of one table (by id) as {column heading: cell text}."""

    def __init__(self, table_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.table_id, self.depth = table_id, 0
        self.headings: list[str] = []
        self.rows: list[dict[str, str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table" and (self.depth or dict(attrs).get("id") == self.table_id):
            self.depth += 1
        elif self.depth == 1 and tag == "tr":
            self._row = []
        elif self.depth == 1 and tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.depth:
            self.depth -= 1
        elif self.depth == 1 and tag in ("td", "th") and self._cell is not None:
            assert self._row is not None
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif self.depth == 1 and tag == "tr" and self._row is not None:
            if not self.headings:
                self.headings = self._row
            else:
                self.rows.append(dict(zip(self.headings, self._row, strict=False)))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str, table_id: str) -> list[dict[str, str]]:
    """The rows of the table with TABLE_ID, each {heading: text}; [] when it is absent."""
    parser = _Table(table_id)
    parser.feed(html)
    parser.close()
    return parser.rows


def number(text: str) -> int | float | None:
    """A figure as the pages write it (1,234, 1,234.50 or 93.0%; '-' or '' for none)."""
    text = text.strip().rstrip("%")
    return None if text in ("", "-") else _number(text)
