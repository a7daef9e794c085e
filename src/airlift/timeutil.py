"""One way to read the expiry dates found in licenses, manifests and inventories."""

from __future__ import annotations

import datetime as dt


def as_utc(value: str | dt.date | dt.datetime) -> dt.datetime:
    """An aware UTC datetime; a bare date means the end of that day (UTC)."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time.max)
    else:
        text = str(value).strip()
        moment = dt.datetime.fromisoformat(text)
        if len(text) == 10:  # YYYY-MM-DD
            moment = dt.datetime.combine(moment.date(), dt.time.max)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
