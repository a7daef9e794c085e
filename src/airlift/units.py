"""Memory sizes the way docker's --memory reads them (`512m`, `8g`, bare bytes)."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([bkmgt]?)b?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# docker refuses a --memory under 6 MB at `docker run`, i.e. after the unit is installed.
MIN_CONTAINER_MEMORY_MB = 6


def parse_memory(value: str | int | float) -> int:
    """Bytes for a docker-style size; ValueError with the accepted forms otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"invalid memory size {value!r}")
    if isinstance(value, int | float):
        return int(value)
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(
            f"invalid memory size {value!r}: use a number with an optional unit "
            "b, k, m, g or t (docker's --memory form, e.g. 512m or 8g)"
        )
    number, unit = match.groups()
    return int(float(number) * _FACTORS[unit.lower()])


def to_mb(value: str | int | float) -> int:
    return parse_memory(value) // (1 << 20)


def format_mb(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"
