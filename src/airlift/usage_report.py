"""The usage report files (JSON, CSV, HTML) and the merge of separately collected runs.

Writers stream host entries from the aggregator's spool, so writing a fleet's report
holds one host in memory at a time. Each file is written under a temporary name and
renamed: a report is complete or absent.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from airlift.compliance import atomic_text
from airlift.usage import (
    ALL_TIME,
    KIND,
    REMOVED_NOTE,
    REPORTED,
    SCHEMA_VERSION,
    UsageAggregator,
    UsageError,
    billed_rows,
    has_figures,
    normalize_service,
    summary_lines,
)
from airlift.usage_html import write_html

FORMATS = ("json", "csv", "html")
FILE_NAMES = {"json": "usage-report.json", "csv": "usage-report.csv",
              "html": "usage-report.html"}
CSV_COLUMNS = ["record_type", "host", "status", "service", "catalog", "meter", "billed_unit",
               "month", "quantity", "billed", "hosts", "collected_via", "collected_at",
               "reason"]


def build_header(agg: UsageAggregator, generated: dt.datetime,
                 run: Mapping[str, Any]) -> dict[str, Any]:
    """Everything but the per-host detail: small, bounded by services and months."""
    as_of = agg.as_of(generated)
    commitments = agg.commitment_rows(as_of)
    iso = _iso
    return {
        "schema_version": SCHEMA_VERSION, "kind": KIND, "generated_at": iso(generated),
        "run": {"run_dir": agg.run_dir, **run,
                "collected_from": iso(agg.first_collected), "collected_to": iso(agg.last_collected),
                "as_of": iso(as_of)},
        "warn_percent": agg.warn_percent,
        "hosts_summary": agg.status_counts(),
        "totals": agg.fleet_totals(),
        "commitments": commitments,
        "warnings": [*agg.warnings, *(row["warning"] for row in commitments if row["warning"])],
    }


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def write_json(agg: UsageAggregator, header: Mapping[str, Any], path: Path) -> None:
    head = json.dumps(header, indent=2)
    with atomic_text(path) as out:
        out.write(head[:-2] + ',\n  "hosts": [')
        for index, entry in enumerate(agg.iter_hosts()):
            out.write(("," if index else "") + "\n    " + json.dumps(entry))
        out.write("\n  ]\n}\n")


def csv_rows(agg: UsageAggregator, header: Mapping[str, Any]) -> Iterable[list[Any]]:
    """Usage rows per host/service/meter/month; `total` rows equal the sum of `usage` rows."""
    for entry in agg.iter_hosts():
        host, status = entry["host"], entry["status"]
        if status != REPORTED:
            yield ["host", host, status, "", "", "", "", "", "", "", "", "", "",
                   entry["reason"]]
            continue
        for svc in entry["services"]:
            base = [host, status, svc["name"], svc.get("catalog", "")]
            tail = [svc.get("collected_via", ""), svc.get("collected_at") or ""]
            if "error" in svc:
                yield ["service-error", *base, "", "", "", "", "", "", *tail, svc["error"]]
                continue
            if not has_figures(svc):  # removed: its records archived, no figures to show
                yield ["service-removed", *base, "", "", "", "", "", "", *tail,
                       REMOVED_NOTE]
                continue
            units = svc.get("units", {})
            billed = dict(billed_rows(svc))
            months = [(ALL_TIME, svc["all_time"]), *svc["months"].items()]
            for month, meters in months:
                for meter, quantity in meters.items():
                    yield ["usage", *base, meter, units.get(meter, ""), month, quantity,
                           billed.get(month, {}).get(meter, ""), 1, *tail, ""]
    for service, entry in header["totals"].items():
        catalog = ",".join(entry["catalogs"])
        for meter, values in entry["meters"].items():
            unit = values.get("billed_unit", "")
            if values["all_time"] is not None:
                yield ["total", "*", "", service, catalog, meter, unit, ALL_TIME,
                       values["all_time"], values.get("billed_all_time", ""),
                       values["all_time_hosts"], "", "", ""]
            billed = values.get("billed_months") or {}
            for month, quantity in values["months"].items():
                hosts = agg.host_counts[(service, meter, month)]
                yield ["total", "*", "", service, catalog, meter, unit, month, quantity,
                       billed.get(month, ""), hosts, "", "", ""]


def write_csv(agg: UsageAggregator, header: Mapping[str, Any], path: Path) -> None:
    with atomic_text(path) as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_rows(agg, header))


def write_reports(agg: UsageAggregator, dest: Path, formats: Sequence[str] = FORMATS,
                  run: Mapping[str, Any] | None = None,
                  generated: dt.datetime | None = None) -> tuple[dict[str, Any], list[Path]]:
    """Write the chosen formats into DEST; returns the header and the written paths."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise UsageError(f"unknown report format(s) {', '.join(unknown)}; use {FORMATS}")
    dest.mkdir(parents=True, exist_ok=True)
    header = build_header(agg, generated or dt.datetime.now(dt.UTC), run or {})
    writers = {"json": write_json, "csv": write_csv, "html": write_html}
    paths = []
    for kind in FORMATS:
        if kind in formats:
            writers[kind](agg, header, dest / FILE_NAMES[kind])
            paths.append(dest / FILE_NAMES[kind])
    return header, paths


def text_summary(agg: UsageAggregator, header: Mapping[str, Any],
                 paths: Iterable[Path]) -> list[str]:
    return summary_lines(header, [str(path) for path in paths], agg.problems(),
                         agg.service_problems())


def load_commitment_file(path: str | os.PathLike[str]) -> object:
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"commitment file {path}: {exc} (give a YAML file of service -> "
                         "year -> purchased units)") from exc


# -- merge -------------------------------------------------------------------------------

def read_report(path: Path) -> dict[str, Any]:
    """A usage-report.json, given itself or the run directory holding it."""
    file = path / FILE_NAMES["json"] if path.is_dir() else path
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{file}: not a readable usage report ({exc}): give a run folder "
                         "holding usage/usage-report.json, its usage folder, or the file"
                         ) from exc
    if not isinstance(report, dict) or report.get("kind") != KIND:
        raise UsageError(f"{file}: not an airlift usage report")
    if report.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(f"{file}: schema_version {report.get('schema_version')} is not "
                         f"{SCHEMA_VERSION}; merge it with the airlift that wrote it")
    report["_file"] = str(file)
    return report


def _as_raw(svc: Mapping[str, Any], base: Path, out: Path) -> dict[str, Any]:
    """A report's service record back in `airlift_usage` form, so it is validated again."""
    units = svc.get("units") or {}
    billed = dict(billed_rows(svc))

    def log(meters: Mapping[str, Any], month: str) -> dict[str, Any]:
        """A meter's billed figure goes back as the numeric billedUnit it came as."""
        figures = billed.get(month) or {}

        def unit(name: str) -> dict[str, Any]:
            if name in figures:
                return {"billedUnit": figures[name]}
            return {"billedUnit": units[name]} if name in units else {}

        return {"apiType": svc.get("api_type"),
                "meters": [{"name": name, "quantity": quantity, **unit(name)}
                           for name, quantity in meters.items()]}

    raw: dict[str, Any] = {key: svc[key] for key in ("name", "catalog", "collected_via",
                                                     "collected_at", "error") if key in svc}
    if has_figures(svc):
        raw["all_time"] = log(svc.get("all_time") or {}, ALL_TIME)
        raw["months"] = {month: log(meters, month) for month, meters in
                         (svc.get("months") or {}).items()}
    archive = svc.get("archive")
    if isinstance(archive, Mapping) and isinstance(archive.get("path"), str):
        raw["archive"] = {**archive, "path": os.path.relpath(base / archive["path"], out)}
    return raw


def merge(inputs: Sequence[Path], out: Path, formats: Sequence[str] = FORMATS,
          commitment_file: str | None = None,
          warn_percent: float = 80.0) -> tuple[dict[str, Any], list[Path], list[str]]:
    """Merge reports: per (host, service) the newest snapshot; reported beats not reported."""
    reports = sorted((read_report(Path(path)) for path in inputs),
                     key=lambda report: report.get("generated_at") or "")
    agg = UsageAggregator(warn_percent=warn_percent)
    out = out.resolve()
    sources = []
    for report in reports:
        run = report.get("run") or {}
        # Archive paths are relative to the report file, so they resolve from wherever it
        # is now: the run_dir recorded inside is where it was written, on another machine
        # once the report travelled on media; it stays in merged_from as provenance only.
        base = Path(report["_file"]).parent.resolve()
        sources.append({"report": report["_file"], "run_dir": run.get("run_dir"),
                        **({"inventory": run["inventory"]} if run.get("inventory") else {}),
                        "generated_at": report.get("generated_at"),
                        "collected_from": run.get("collected_from"),
                        "collected_to": run.get("collected_to")})
        for entry in report.get("hosts") or []:
            host = str(entry.get("host"))
            agg.set_site(host, entry.get("site"))
            if entry.get("status") == REPORTED:
                agg.add_snapshot(host, [normalize_service(_as_raw(svc, base, out), None)
                                        for svc in entry.get("services") or []])
            else:
                agg.mark(host, str(entry.get("status")), str(entry.get("reason") or ""))
        for row in report.get("commitments") or []:
            agg.add_commitments({row["service"]: {row["year"]: row["purchased"]}},
                                report["_file"])
    if commitment_file:
        agg.add_commitments(load_commitment_file(commitment_file), commitment_file)
    try:
        header, paths = write_reports(agg, out, formats, run={"merged_from": sources})
        return header, paths, text_summary(agg, header, paths)
    finally:
        agg.close()
