"""Fleet reports of any size written by the real writers (usage and compliance), for the
page tests and the README screenshots: `python tests/report_fixtures.py OUT [HOSTS]`."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from airlift import checks, compliance
from airlift.usage import FAILED, UNREACHABLE, UsageAggregator
from airlift.usage_report import write_reports

MONTHS = [f"2026-{month:02d}" for month in range(1, 13)]
SERVICES = {"sentiment": "Sentiment.TextRecords", "read": "Read.Pages",
            "speech": "Speech.Seconds",
            "translator": "CognitiveServices.TextTranslation.Container."
                          "OneDocumentTranslatedCharacters"}
# Disconnected Translator's usage log (issue 14): a numeric billedUnit per meter, the
# figure Microsoft counts against the licensed characters.
TRANSLATOR_METER = SERVICES["translator"]


def translator_log(quantity: float, billed: float) -> dict:
    return {"type": "CommerceUsageResponse", "apiType": "texttranslation",
            "serviceName": "texttranslation",
            "meters": [{"name": TRANSLATOR_METER, "quantity": quantity, "billedUnit": billed}]}
GENERATED = dt.datetime(2026, 12, 31, 13, 0, tzinfo=dt.UTC)
WAIVER = {"check": "host.cpu_clock", "expires": "2027-03-01",
          "justification": "lab hosts run at 2.0 GHz; production hosts are checked"}


def host_name(index: int, hosts: int) -> str:
    site = "north" if index < hosts * 2 // 3 else "south"
    return f"{site}-ai-{index:04d}.enclave.local"


def site_of(index: int, hosts: int) -> str:
    return "site_north" if index < hosts * 2 // 3 else "site_south"


def _log(meter: str, quantity: float, unit: str | None = None) -> dict:
    return {"apiType": "T", "meters": [{"name": meter, "quantity": quantity,
                                        **({"billedUnit": unit} if unit else {})}]}


def _usage(index: int) -> dict:
    services = []
    for name, meter in SERVICES.items():
        unit = "1 hour" if name == "speech" else None
        per_month = (index % 7 + 1) * 1000 + (index * 37) % 500
        if name == "translator":  # characters, billed at 1.5 times what was translated
            per_month *= 100
            services.append({"name": name, "catalog": "translator-text",
                             "collected_via": "running",
                             "all_time": translator_log(per_month * 12, per_month * 18),
                             "months": {m: translator_log(per_month, per_month * 3 // 2)
                                        for m in MONTHS}})
            continue
        services.append({"name": name, "catalog": f"sim-{name}", "collected_via": "running",
                         "all_time": _log(meter, per_month * 12, unit),
                         "months": {m: _log(meter, per_month, unit) for m in MONTHS}})
    if index % 97 == 5:  # a host where one service could not be collected
        services[1] = {"name": "read", "collected_via": "temporary",
                       "error": "could not start a temporary instance: image missing"}
    return {"schema": 1, "collected_at": "2026-12-31T12:00:00Z", "services": services}


def usage_report(hosts: int, dest: Path, failed_every: int = 50,
                 unreachable_every: int = 71, sites: bool = True) -> dict:
    """HOSTS expected: most report, every 50th fails, every 71st is unreachable; SITES:
    whether the inventory groups them by site."""
    agg = UsageAggregator(warn_percent=80)
    agg.collection_ran("reports/20261231T120000Z/usage")
    names = [host_name(i, hosts) for i in range(hosts)]
    agg.expect(names)
    for index, host in enumerate(names):
        if sites:
            agg.set_site(host, site_of(index, hosts))
        if index % failed_every == failed_every - 1:
            agg.mark(host, FAILED, "Read the usage endpoints: connection refused on 5001")
        elif index % unreachable_every == unreachable_every - 1:
            agg.mark(host, UNREACHABLE, "ssh: connect to host: No route to host")
        else:
            agg.add_usage(host, _usage(index))
    # read runs near its plan; sentiment well within it
    per_host_year = 12 * 4000
    agg.add_commitments({"read": {2026: hosts * per_host_year * 1.1},
                         "sentiment": {2026: hosts * per_host_year * 3},
                         # covers the translated characters, not the billed ones
                         "translator": {2026: hosts * per_host_year * 100 * 1.2}}, "fixture")
    try:
        header, _ = write_reports(agg, dest, run={"playbook": "collect_usage.yml",
                                                  "inventory": ["inventories/example"]},
                                  generated=GENERATED)
    finally:
        agg.close()
    return header


def _results(index: int) -> list[dict] | None:
    if index % 83 == 82:
        return None  # unreported
    out = [checks.result(check, "host", checks.PASS, "ok", "ok")
           for check in checks.INVENTORY_CHECKS if check != "inventory.catalog"]
    for service in ("sentiment", "read"):
        out.append(checks.result("inventory.catalog", service, checks.PASS, "catalog key",
                                 f"sim-{service}"))
        out.append(checks.result("service.cores", service, checks.PASS, "1", "2"))
        out.append(checks.result("service.memory", service, checks.PASS, "4g", "8g"))
    cores = "8" if index % 40 == 3 else "2"
    out += [
        checks.result("host.architecture", "host", checks.PASS, "x86_64", "x86_64"),
        checks.result("host.cpu_clock", "host", checks.FAIL, "2.6 GHz", "2.0 GHz",
                      "use hosts with a faster CPU, or waive host.cpu_clock"),
        checks.result("host.cores", "host", checks.FAIL if cores == "8" else checks.PASS,
                      cores, "4", "assign fewer cpus to the services, or a larger host"
                      if cores == "8" else ""),
        checks.result("host.memory", "host", checks.PASS, "16g", "32g"),
        # Short of disk on every 5th host, each by its own amount: one failure row for
        # the check, not one per observed value.
        checks.result("host.disk", "host", checks.FAIL if index % 5 == 1 else checks.PASS,
                      "40 GB", f"{20 + index % 19} GB" if index % 5 == 1 else "120 GB",
                      "free space under /var/lib/airlift, or a larger disk"
                      if index % 5 == 1 else ""),
        checks.result("host.cpu_flags_recommended", "read",
                      checks.WARN if index % 9 == 0 else checks.PASS, "avx512f",
                      "avx2" if index % 9 == 0 else "avx512f",
                      "runs slower without avx512f" if index % 9 == 0 else ""),
        checks.result("host.license", "sentiment",
                      checks.FAIL if index % 150 == 7 else checks.PASS, "valid 30 days",
                      "expires in 3 days" if index % 150 == 7 else "valid 300 days",
                      "renew the license in the bundle (airlift stage)"
                      if index % 150 == 7 else ""),
    ]
    return checks.apply_waivers(out, [WAIVER], today=GENERATED.date())


def compliance_report(hosts: int, dest: Path) -> dict:
    rows = [(host_name(i, hosts), _results(i)) for i in range(hosts)]
    return compliance.write_reports(dest, "20261231T130000Z", lambda: iter(rows),
                                    inventory=["inventories/example/hosts.yml"])


if __name__ == "__main__":
    out, size = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 40
    usage_report(size, out / "usage")
    compliance_report(size, out / "preflight")
    print(out / "usage" / "usage-report.html", out / "preflight" / "compliance.html")
