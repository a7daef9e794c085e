"""Offline usage: streaming aggregation of what each host's containers report.

The usage-log endpoints return cumulative totals, so the same figures may arrive twice
(a task retried, two runs merged): for each (host, service) the newest successful
snapshot wins and replaces, never adds to, the one counted before. Each host's current
snapshot lives as one line in a JSONL spool file on disk; memory holds only the fleet
counters keyed by (service, meter, month), small per-service metadata and a spool offset
per host, so a fleet of thousands costs a few hundred bytes per host, not its payload.

Hosts that were expected but gave no numbers are `failed` or `unreachable` with a reason,
never zero. Free text (failure messages) is redacted of key-looking values and truncated:
a report must be safe to carry out of the enclave.
"""

from __future__ import annotations

import calendar
import datetime as dt
import itertools
import json
import math
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from airlift.timeutil import as_utc

SCHEMA_VERSION = 1
KIND = "airlift.usage-report"
REPORTED, FAILED, UNREACHABLE = "reported", "failed", "unreachable"
# Reported hosts with at least one service not collected: a subset of REPORTED, counted
# apart so a summary never reads as complete when a service's figures are missing.
WITH_ERRORS = "reported_with_errors"
# collected_via of the Output directory of a service no longer deployed on the host: its
# records are archived, no totals are asked for (its container may be gone).
REMOVED = "removed"
REMOVED_NOTE = "no longer deployed: Output records archived, no totals asked for"
ALL_TIME = "all-time"
NO_RESULT = "no usage result: the host did not run the collection task"
REASON_LIMIT = 300
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_MONTH_SLASH = re.compile(r"^(\d{1,2})/(\d{4})$")
_SECRETS = [
    re.compile(r"(?i)\b(api[_-]?key|apikey|ocp-apim-subscription-key|password|passwd|token|"
               r"secret|authorization)(\s*[=:]\s*|\"?\s*:\s*\"?)\S+"),
    re.compile(r"\b[0-9a-fA-F]{32}\b"),  # Azure AI resource keys
    re.compile(r"\b[A-Za-z0-9]{84}\b"),  # the newer 84-character keys
]


class UsageError(ValueError):
    """An input report or commitment file that cannot be used."""


def redact(text: object, limit: int = REASON_LIMIT) -> str:
    """Free text made safe for a report: key-looking values masked, length bounded."""
    value = " ".join(str(text).split())
    value = _SECRETS[0].sub(lambda m: f"{m.group(1)}=[redacted]", value)
    for pattern in _SECRETS[1:]:
        value = pattern.sub("[redacted]", value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _number(value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"quantity {value!r} is not a finite number")
    return value


def _month_key(key: object) -> str:
    text = str(key).strip()
    if match := _MONTH.match(text):
        year, month = int(match[1]), int(match[2])
    elif match := _MONTH_SLASH.match(text):
        month, year = int(match[1]), int(match[2])
    else:
        raise UsageError(f"month {text!r} is not YYYY-MM")
    if not 1 <= month <= 12:
        raise UsageError(f"month {text!r} is not YYYY-MM")
    return f"{year:04d}-{month:02d}"


def _billed(value: object) -> int | float | None:
    """A numeric billedUnit (Translator's billed figure), None when absent or a unit name.

    A number that is not finite is bad input, not a missing figure: the record is refused
    rather than counted as if the service had billed nothing.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        raise UsageError(f"billedUnit {value!r} is not a finite number")
    return value


def _meters(log: object, units: dict[str, str],
            billed: dict[str, int | float] | None = None,
            ) -> tuple[dict[str, int | float], str | None]:
    """One usage-log response as {meter: quantity}; only the documented fields are read.

    billedUnit is either a unit name (a string, kept in UNITS) or the figure the service
    bills for the meter (a number, summed into BILLED): Microsoft counts that figure, not
    the quantity, against a commitment.
    """
    if not isinstance(log, Mapping):
        raise UsageError("usage log is not a mapping")
    meters: dict[str, int | float] = {}
    for meter in log.get("meters") or []:
        if not isinstance(meter, Mapping) or not isinstance(meter.get("name"), str):
            raise UsageError("meter without a name")
        name = meter["name"]
        meters[name] = meters.get(name, 0) + _number(meter.get("quantity", 0))
        unit = meter.get("billedUnit")
        if isinstance(unit, str):
            units[name] = unit
        elif (figure := _billed(unit)) is not None and billed is not None:
            billed[name] = billed.get(name, 0) + figure
    api_type = log.get("apiType")
    return meters, api_type if isinstance(api_type, str) else None


def normalize_service(raw: Mapping[str, Any], collected_at: str | None) -> dict[str, Any]:
    """A service entry of `airlift_usage`, whitelisted field by field (nothing else kept).

    Only a record with figures gets all_time and months: one with an error or of a removed
    service has none, so it can never be read as zero. Each keeps its archive: the raw
    records are evidence whether or not the figures could be read.
    """
    record: dict[str, Any] = {"name": str(raw.get("name") or "?")}
    for key in ("catalog", "collected_via"):
        if isinstance(raw.get(key), str):
            record[key] = raw[key]
    record["collected_at"] = raw.get("collected_at") or collected_at
    if raw.get("error") is not None:
        record["error"] = redact(raw["error"])
    elif record.get("collected_via") != REMOVED:
        record.update(_figures(raw))
    archive = raw.get("archive")
    if isinstance(archive, Mapping):
        record["archive"] = {key: archive[key] for key in ("path", "sha256", "size")
                             if isinstance(archive.get(key), str | int)}
    return record


def _figures(raw: Mapping[str, Any]) -> dict[str, Any]:
    """all_time, months, api_type, units and billed figures of a service entry, or an
    `error`. billed_all_time / billed_months ({meter: figure}) only where the service
    reports a numeric billedUnit."""
    units: dict[str, str] = {}
    billed_all_time: dict[str, int | float] = {}
    billed_months: dict[str, dict[str, int | float]] = {}
    try:
        all_time, api_type = _meters(raw.get("all_time") or {}, units, billed_all_time)
        months = {}
        for key, log in (raw.get("months") or {}).items():
            month, figures = _month_key(key), {}
            months[month], month_api = _meters(log, units, figures)
            if figures:
                billed_months[month] = figures
            api_type = api_type or month_api
    except UsageError as exc:
        return {"error": f"invalid usage data: {redact(exc)}"}
    return {**({"api_type": api_type} if api_type else {}), "all_time": all_time,
            "months": dict(sorted(months.items())), **({"units": units} if units else {}),
            **({"billed_all_time": billed_all_time} if billed_all_time else {}),
            **({"billed_months": dict(sorted(billed_months.items()))}
               if billed_months else {})}


def billed_rows(record: Mapping[str, Any]) -> list[tuple[str, Mapping[str, int | float]]]:
    """(month or ALL_TIME, {meter: billed figure}) of a record, where it carries any."""
    return [(ALL_TIME, record.get("billed_all_time") or {}),
            *(record.get("billed_months") or {}).items()]


def has_figures(record: Mapping[str, Any]) -> bool:
    """Whether a normalized record carries figures (not an error, not a removed service)."""
    return "all_time" in record


def _moment(record: Mapping[str, Any]) -> dt.datetime:
    try:
        return as_utc(record["collected_at"]) if record.get("collected_at") else _EPOCH
    except (TypeError, ValueError):
        return _EPOCH


def _rank(record: Mapping[str, Any]) -> tuple[bool, dt.datetime]:
    """Snapshots with figures beat errors and removed services; then the newest wins."""
    return has_figures(record), _moment(record)


def parse_commitments(raw: object, source: str) -> dict[str, dict[int, int | float]]:
    """{service: {year: purchased units}}, validated; the year may be a string."""
    if not isinstance(raw, Mapping):
        raise UsageError(f"{source}: commitments must map service -> {{year: units}}")
    parsed: dict[str, dict[int, int | float]] = {}
    for service, years in raw.items():
        if not isinstance(years, Mapping):
            raise UsageError(f"{source}: commitments of {service} must map year -> units")
        for year, units in years.items():
            try:
                parsed.setdefault(str(service), {})[int(year)] = _number(units)
            except (UsageError, ValueError) as exc:
                raise UsageError(f"{source}: {service} {year}: {exc}") from exc
    return parsed


class UsageAggregator:
    """Fleet counters fed host by host; the per-host detail stays in the spool file."""

    def __init__(self, warn_percent: float = 80.0, spool_dir: str | None = None) -> None:
        self.warn_percent = warn_percent
        self.run_dir: str | None = None
        self.sources: list[dict[str, Any]] = []
        self.commitments: dict[str, dict[int, int | float]] = {}
        self.warnings: list[str] = []
        self._spool_dir = spool_dir
        self._spool: IO[bytes] | None = None
        self._reported: dict[str, int] = {}            # host -> spool offset of its snapshot
        self._problems: dict[str, tuple[str, str]] = {}  # host -> (status, reason)
        self._notes: dict[str, str] = {}
        self._service_errors: dict[str, int] = {}     # host -> services not collected
        self._expected: set[str] | None = None          # None: every host seen is expected
        self._sites: dict[str, str] = {}                # host -> its site group, when known
        self._seen = False
        self._collection_ran = False
        self.totals: dict[tuple[str, str, str], int | float] = {}
        self.host_counts: dict[tuple[str, str, str], int] = {}
        # Numeric billedUnit summed like the quantities, and how many hosts reported one.
        self.billed: dict[tuple[str, str, str], int | float] = {}
        self.billed_hosts: dict[tuple[str, str, str], int] = {}
        # What a commitment counts: per host and meter-month the billed figure where the
        # service reports one, else the quantity.
        self.counted: dict[tuple[str, str, str], int | float] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.first_collected: dt.datetime | None = None
        self.last_collected: dt.datetime | None = None

    # -- input ---------------------------------------------------------------------------

    @property
    def report_due(self) -> bool:
        """Whether a report is written: a usage result arrived or a collection ran.

        A run with neither (any other playbook) writes nothing; a collection where every
        host failed still gets a report listing each host, or the operator has nothing.
        """
        return self._seen or bool(self._reported) or self._collection_ran

    def collection_ran(self, run_dir: object = None) -> None:
        """A collection play started (the collect role's marker); RUN_DIR is its folder."""
        self._collection_ran = True
        if self.run_dir is None and isinstance(run_dir, str) and run_dir:
            self.run_dir = run_dir

    def expect(self, hosts: Iterable[str]) -> None:
        """Hosts that should report; without a call, every host seen is expected."""
        if self._expected is None:
            self._expected = set()
        self._expected.update(sys.intern(host) for host in hosts)

    @property
    def has_sites(self) -> bool:
        """Whether any host's site is known (the report then groups by site)."""
        return bool(self._sites)

    def set_site(self, host: str, site: object) -> None:
        """The host's site (an inventory group such as site_north): the report groups by it."""
        if isinstance(site, str) and site:
            self._sites[sys.intern(host)] = sys.intern(site)

    def add_usage(self, host: str, usage: Mapping[str, Any]) -> None:
        """One host's `airlift_usage` return value (schema 1)."""
        self._seen = True
        if not isinstance(usage, Mapping) or usage.get("schema") != 1:
            self.mark(host, FAILED, "airlift_usage result is not schema 1")
            return
        if self.run_dir is None and isinstance(usage.get("run_dir"), str):
            self.run_dir = usage["run_dir"]
        collected_at = usage.get("collected_at")
        services = [normalize_service(item, collected_at if isinstance(collected_at, str)
                                      else None)
                    for item in usage.get("services") or [] if isinstance(item, Mapping)]
        self.add_snapshot(host, services)

    def add_snapshot(self, host: str, services: list[dict[str, Any]]) -> None:
        """Normalized service records of a host; per service the newest snapshot wins."""
        offset = self._reported.get(host)
        previous = self._read(offset)["services"] if offset is not None else []
        current = {item["name"]: item for item in previous}
        for record in services:
            old = current.get(record["name"])
            if old is not None and _rank(record) <= _rank(old):
                continue
            if old is not None:
                self._count(old, -1)
            self._count(record, +1)
            current[record["name"]] = record
        entry = {"host": host, "services": list(current.values())}
        self._reported[sys.intern(host)] = self._write(entry)
        errors = sum("error" in record for record in current.values())
        if errors:
            self._service_errors[host] = errors
        else:
            self._service_errors.pop(host, None)
        if host in self._problems:
            self._notes[host] = f"reported after being {self._problems.pop(host)[0]}"

    def mark(self, host: str, status: str, reason: str) -> None:
        """A failed or unreachable host; it never outranks a host that reported."""
        if host in self._reported:
            self._notes.setdefault(host, f"{status} after reporting: {redact(reason)}")
        elif status == FAILED or self._problems.get(host, (UNREACHABLE,))[0] == UNREACHABLE:
            self._problems[host] = (status, redact(reason))

    def add_commitments(self, raw: object, source: str) -> None:
        for service, years in parse_commitments(raw, source).items():
            self.commitments.setdefault(service, {}).update(years)

    def _count(self, record: Mapping[str, Any], sign: int) -> None:
        if not has_figures(record):
            return
        service = record["name"]
        meta = self.services.setdefault(service, {"catalogs": set(), "api_types": set(),
                                                  "units": {}, "months": set()})
        if sign > 0:
            meta["catalogs"].add(record.get("catalog"))
            meta["api_types"].add(record.get("api_type"))
            meta["units"].update(record.get("units") or {})
            meta["months"].update(record["months"])
            moment = _moment(record)
            if moment > _EPOCH:
                self.first_collected = min(self.first_collected or moment, moment)
                self.last_collected = max(self.last_collected or moment, moment)
        billed = dict(billed_rows(record))
        rows = [(ALL_TIME, record["all_time"]), *record["months"].items()]
        for month, meters in rows:
            for meter, quantity in meters.items():
                key = (service, meter, month)
                self.totals[key] = self.totals.get(key, 0) + sign * quantity
                self.host_counts[key] = self.host_counts.get(key, 0) + sign
                figure = billed.get(month, {}).get(meter)
                self.counted[key] = self.counted.get(key, 0) + sign * (
                    quantity if figure is None else figure)
        for month, figures in billed.items():
            for meter, figure in figures.items():
                key = (service, meter, month)
                self.billed[key] = self.billed.get(key, 0) + sign * figure
                self.billed_hosts[key] = self.billed_hosts.get(key, 0) + sign

    # -- spool -----------------------------------------------------------------------------

    def _write(self, entry: dict[str, Any]) -> int:
        if self._spool is None:  # lives as long as the aggregator; close() removes it
            self._spool = tempfile.TemporaryFile(  # noqa: SIM115
                prefix="airlift-usage-", suffix=".jsonl", dir=self._spool_dir)
        self._spool.seek(0, 2)
        offset = self._spool.tell()
        self._spool.write(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        return offset

    def _read(self, offset: int) -> dict[str, Any]:
        assert self._spool is not None
        self._spool.flush()
        self._spool.seek(offset)
        return json.loads(self._spool.readline())

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    # -- output ----------------------------------------------------------------------------

    def _host_names(self) -> list[str]:
        others = set(self._problems) if self._expected is None else self._expected
        return sorted(set(self._reported) | others)

    def problems(self) -> Iterator[tuple[str, str, str]]:
        """(host, status, reason) of every expected host without numbers, sorted."""
        for host in self._host_names():
            if host not in self._reported:
                yield (host, *self._problems.get(host, (FAILED, NO_RESULT)))

    def service_problems(self) -> Iterator[tuple[str, str, str]]:
        """(host, service, error) of every service a reported host could not collect."""
        for host in sorted(self._service_errors):
            for record in sorted(self._read(self._reported[host])["services"],
                                 key=lambda item: item["name"]):
                if "error" in record:
                    yield host, record["name"], record["error"]

    def iter_hosts(self) -> Iterator[dict[str, Any]]:
        """Every host, sorted: reported ones with their services, the others with a reason;
        `site` when the host's site group is known."""
        for host in self._host_names():
            site = {"site": self._sites[host]} if host in self._sites else {}
            if host in self._reported:
                entry = self._read(self._reported[host])
                services = sorted(entry["services"], key=lambda item: item["name"])
                moments = [item["collected_at"] for item in services if item.get("collected_at")]
                yield {"host": host, **site, "status": REPORTED,
                       "collected_at": max(moments, key=lambda s: as_utc(s)) if moments else None,
                       "services": services,
                       **({"note": self._notes[host]} if host in self._notes else {})}
            else:
                status, reason = self._problems.get(host, (FAILED, NO_RESULT))
                yield {"host": host, **site, "status": status, "reason": reason}

    def status_counts(self) -> dict[str, int]:
        names = self._host_names()
        counts = {"expected": len(names), REPORTED: 0, WITH_ERRORS: 0, FAILED: 0,
                  UNREACHABLE: 0}
        for host in names:
            counts[WITH_ERRORS] += host in self._service_errors
            status = REPORTED if host in self._reported else self._problems.get(
                host, (FAILED, ""))[0]
            counts[status] += 1
        return counts

    def fleet_totals(self) -> dict[str, Any]:
        """{service: {catalogs, api_types, months_collected, meters: {meter: totals}}}."""
        result: dict[str, Any] = {}
        for (service, meter, month), quantity in sorted(self.totals.items()):
            hosts = self.host_counts[(service, meter, month)]
            if hosts <= 0:
                continue  # every snapshot that carried it was replaced
            meta = self.services[service]
            entry = result.setdefault(service, {
                "catalogs": sorted(c for c in meta["catalogs"] if c),
                "api_types": sorted(a for a in meta["api_types"] if a),
                "months_collected": sorted(meta["months"]), "meters": {}})
            meter_entry = entry["meters"].setdefault(meter, {"all_time": None,
                                                             "all_time_hosts": 0, "months": {}})
            if meter in meta["units"]:
                meter_entry["billed_unit"] = meta["units"][meter]
            if month == ALL_TIME:
                meter_entry["all_time"], meter_entry["all_time_hosts"] = tidy(quantity), hosts
            else:
                meter_entry["months"][month] = tidy(quantity)
            key = (service, meter, month)
            if self.billed_hosts.get(key, 0) > 0:
                figure = tidy(self.billed[key])
                if month == ALL_TIME:
                    meter_entry["billed_all_time"] = figure
                    meter_entry["billed_hosts"] = self.billed_hosts[key]
                else:
                    meter_entry.setdefault("billed_months", {})[month] = figure
        return result

    def as_of(self, generated: dt.datetime) -> dt.datetime:
        return self.last_collected or generated

    def commitment_rows(self, as_of: dt.datetime) -> list[dict[str, Any]]:
        """Use against each commitment plan, with a linear projection to the year's end."""
        rows = []
        for service, years in sorted(self.commitments.items()):
            for year, purchased in sorted(years.items()):
                rows.append(self._commitment(service, year, purchased, as_of))
        return rows

    def _commitment(self, service: str, year: int, purchased: int | float,
                    as_of: dt.datetime) -> dict[str, Any]:
        prefix = f"{year:04d}-"
        used = tidy(sum(q for (s, _, month), q in self.counted.items()
                        if s == service and month.startswith(prefix)))
        billed = any(hosts > 0 for (s, _, month), hosts in self.billed_hosts.items()
                     if s == service and month.startswith(prefix))
        collected = sorted(m for m in self.services.get(service, {}).get("months", ())
                           if m.startswith(prefix))
        last_month = 12 if year < as_of.year else as_of.month if year == as_of.year else 0
        missing = [f"{prefix}{m:02d}" for m in range(1, last_month + 1)
                   if f"{prefix}{m:02d}" not in collected]
        start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
        days = 366 if calendar.isleap(year) else 365
        if year < as_of.year:
            projected: int | float | None = used
        elif year == as_of.year:
            elapsed = max((as_of - start).total_seconds() / 86400, 1.0)
            projected = tidy(round(used * days / elapsed, 2))
        else:
            projected = None
        row: dict[str, Any] = {
            "service": service, "year": year, "purchased": purchased, "used": used,
            # "billed": the service's numeric billedUnit where it reports one (quantity
            # elsewhere); "quantity": no billed figure this year.
            "counted": "billed" if billed else "quantity",
            "percent_used": round(100 * used / purchased, 1) if purchased else None,
            "projected_year_end": projected,
            "projected_percent": (round(100 * projected / purchased, 1)
                                  if purchased and projected is not None else None),
            "days_elapsed": min(days, max(0, (as_of - start).days)),
            "months_collected": collected, "months_missing": missing}
        row["status"], row["warning"] = self._commitment_status(row)
        return row

    def _commitment_status(self, row: Mapping[str, Any]) -> tuple[str, str | None]:
        label = f"commitment {row['service']} {row['year']}"
        used, projected = row["percent_used"], row["projected_percent"]
        gap = (f" (months not collected: {', '.join(row['months_missing'])})"
               if row["months_missing"] else "")
        if used is None:
            return "ok", None
        if used >= 100:
            return "exceeded", f"{label}: {used}% of {fmt(row['purchased'])} used{gap}"
        if used >= self.warn_percent:
            return "warning", (f"{label}: {used}% of {fmt(row['purchased'])} used, past the "
                               f"{fmt(self.warn_percent)}% threshold{gap}")
        if projected is not None and projected >= 100:
            return "warning", (f"{label}: {used}% used, projected {projected}% by year end"
                               f"{gap}")
        return "ok", None


def tidy(value: int | float) -> int | float:
    """Integral floats as int; float noise left by replacing snapshots rounded away."""
    if isinstance(value, float):
        value = round(value, 6)
        return int(value) if value.is_integer() else value
    return value


def fmt(value: int | float | None) -> str:
    if value is None:
        return "-"
    value = tidy(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def summary_lines(header: Mapping[str, Any], paths: Iterable[str] = (),
                  problems: Iterable[tuple[str, str, str]] = (),
                  service_problems: Iterable[tuple[str, str, str]] = ()) -> list[str]:
    """The few lines printed at the end of a run.

    A host that reported with a service not collected says so on the first line, and the
    services are named, so a partial collection never reads as complete.
    """
    counts = header["hosts_summary"]
    with_errors = counts.get(WITH_ERRORS, 0)  # absent from reports of older airlift
    partial = f" ({with_errors} with services not collected)" if with_errors else ""
    lines = [f"airlift usage: {counts[REPORTED]} of {counts['expected']} host(s) reported"
             f"{partial}, {counts[FAILED]} failed, {counts[UNREACHABLE]} unreachable"]
    for service, entry in header["totals"].items():
        meters = ", ".join(f"{meter} {fmt(values['all_time'])}"
                           + (f" (billed {fmt(values['billed_all_time'])})"
                              if values.get("billed_all_time") is not None else "")
                           for meter, values in entry["meters"].items())
        lines.append(f"  {service}: {meters} (all time, {len(entry['months_collected'])} "
                     f"month(s) collected)")
    shown = list(itertools.islice(problems, 6))
    lines.extend(f"  {host} {status}: {reason[:100]}" for host, status, reason in shown[:5])
    if len(shown) > 5:
        more = counts[FAILED] + counts[UNREACHABLE] - 5
        lines.append(f"  ... and {more} more host(s) without figures (see the report)")
    shown_services, more_services = [], 0
    for item in service_problems:
        if len(shown_services) < 5:
            shown_services.append(item)
        else:
            more_services += 1
    lines.extend(f"  {host} {service} not collected: {error[:100]}"
                 for host, service, error in shown_services)
    if more_services:
        lines.append(f"  ... and {more_services} more service(s) not collected (see the report)")
    lines.extend(f"  WARNING {warning}" for warning in header["warnings"])
    lines.extend(f"  report: {path}" for path in paths)
    lines.extend(f"  open in a browser: {path}" for path in paths if str(path).endswith(".html"))
    return lines
