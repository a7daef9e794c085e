"""Preflight and compliance checks: every check on every host, never stopping at the first.

Each result says what was expected and what was observed, so an operator can act on a
report without re-running anything. Inventory checks need no facts and run once before
any host is contacted; host checks evaluate the facts of airlift_host_facts against the
catalog and the services assigned to the host, including their sums.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from airlift import frontdoor, gpu
from airlift.timeutil import as_utc
from airlift.units import MIN_CONTAINER_MEMORY_MB, format_mb, to_mb

PASS, FAIL, WARN, WAIVED = "PASS", "FAIL", "WARN", "WAIVED"
ENGINES = ("podman", "docker")

# Stable ids: reports, waivers and JUnit test names refer to these.
INVENTORY_CHECKS = {
    "inventory.eula": "EULA accepted",
    "inventory.engine": "Container engine supported",
    "inventory.catalog": "Service names a catalog entry",
    "inventory.names": "Service instance names unique on the host",
    "inventory.ports": "Service ports unique on the host",
    "inventory.resources": "Service cpus and memory are valid values",
    "inventory.waivers": "Waivers name known checks",
    "inventory.dependencies": "Services a service needs run on the same host",
    "inventory.gpus": "GPU services get distinct GPUs or are told to share",
}
# The front door's checks (hosts with airlift_frontdoor_enabled); not waivable.
FRONTDOOR_CHECKS = {
    "frontdoor.routes": "Every service can be routed through the front door",
    "frontdoor.certificate": "Host certificate valid, from the CA, naming the host",
    "frontdoor.ports": "Front-door ports free on the host",
}
HOST_CHECKS = {
    "host.architecture": "CPU architecture is x86-64",
    "host.cpu_clock": "Every core at the minimum clock",
    "host.cpu_flags": "Instruction sets the service requires",
    "host.cpu_flags_recommended": "Instruction sets the service recommends",
    "host.cores": "Cores assigned to all services fit the host",
    "host.memory": "Memory assigned to all services fits the host",
    "host.disk": "Free disk for images and staging",
    "host.gpu": "GPU for services that need one",
    "host.gpu_count": "GPUs assigned to all services fit the host",
    "host.gpu_driver": "NVIDIA driver answers (nvidia-smi)",
    "host.gpu_runtime": "Container engine can hand GPUs to containers",
    "host.engine": "Container engine installed",
    "host.init": "systemd is init",
    "host.ports": "Service ports free on the host",
    "host.license": "License in the bundle, not expiring soon",
    "service.cores": "Cores assigned to the service meet its minimum",
    "service.memory": "Memory assigned to the service meets its minimum",
}
ALL_CHECKS = {**INVENTORY_CHECKS, **HOST_CHECKS, **FRONTDOOR_CHECKS}


def result(check: str, subject: str, status: str, expected: Any, observed: Any,
           message: str = "") -> dict[str, Any]:
    return {"id": check, "title": ALL_CHECKS[check], "subject": subject, "status": status,
            "expected": expected, "observed": observed, "message": message}


def engine_check(facts: dict[str, Any]) -> dict[str, Any]:
    """host.engine: the engine answers (docker: its daemon, which units need running)."""
    engine, version = facts.get("engine", "podman"), facts.get("engine_version")
    if version:
        return result("host.engine", "host", PASS, engine, version)
    if engine == "docker" and facts.get("engine_installed"):
        return result("host.engine", "host", FAIL, engine,
                      "docker installed, its daemon does not answer",
                      "start the daemon: systemctl enable --now docker.service")
    return result("host.engine", "host", FAIL, engine, "not installed")


def _valid_memory(value: Any) -> bool:
    """A size docker accepts: its form, and no less than its minimum (0 would mean no
    limit at all once rounded to MiB)."""
    try:
        return to_mb(value) >= MIN_CONTAINER_MEMORY_MB
    except ValueError:
        return False


def inventory_checks(host_vars: Mapping[str, Any], catalog: Mapping[str, Any]) -> list[dict]:
    """Checks of one host's inventory that need no facts; FAIL messages name the fix."""
    out = []
    eula = host_vars.get("airlift_eula")
    out.append(result("inventory.eula", "host", PASS if eula == "accept" else FAIL, "accept",
                      eula, "" if eula == "accept" else
                      "set airlift_eula: accept in the inventory once the container's "
                      "license terms are accepted"))
    engine = host_vars.get("airlift_container_engine", "podman")
    out.append(result("inventory.engine", "host", PASS if engine in ENGINES else FAIL,
                      " or ".join(ENGINES), engine,
                      "" if engine in ENGINES else
                      f"set airlift_container_engine to one of {', '.join(ENGINES)}"))
    services = host_vars.get("airlift_services") or []
    for service in services:
        name, key = service.get("name", "?"), service.get("catalog")
        known = key in catalog
        own = known and catalog[key].get("license", True) is False
        message = ""
        if not known:
            message = (f"unknown catalog entry {key!r}; valid: {', '.join(sorted(catalog))} "
                       "(or add it with airlift_catalog_overrides)")
        elif own:
            message = (f"{key!r} is run by airlift itself, not as a service: remove it from "
                       "airlift_services and set airlift_frontdoor_enabled: true")
        out.append(result("inventory.catalog", name, FAIL if message else PASS,
                          "a catalog key of a licensed container", key, message))
        bad = []
        if "memory" in service and not _valid_memory(service["memory"]):
            bad.append(f"memory {service['memory']!r} (use docker's form, e.g. 512m or 8g, "
                       f"at least {MIN_CONTAINER_MEMORY_MB}m)")
        cpus = service.get("cpus")
        if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, int | float)
                                 or cpus <= 0):
            bad.append(f"cpus {cpus!r} (use a positive number)")
        port = service.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            bad.append(f"port {port!r} (use a number from 1 to 65535)")
        out.append(result("inventory.resources", name, FAIL if bad else PASS,
                          "valid cpus, memory and port", ", ".join(bad) or "valid",
                          f"fix {'; '.join(bad)}" if bad else ""))
    reserved = [service for service in services if service.get("name") == frontdoor.RESERVED_NAME]
    if reserved:
        out.append(result("inventory.names", "host", FAIL, "names other than frontdoor",
                          frontdoor.RESERVED_NAME,
                          f"rename service {frontdoor.RESERVED_NAME!r}: airlift-"
                          f"{frontdoor.RESERVED_NAME}.service is the front door's unit"))
    for check, field in (("inventory.names", "name"), ("inventory.ports", "port")):
        counts = Counter(service.get(field) for service in services)
        clashes = sorted(str(value) for value, count in counts.items() if count > 1)
        out.append(result(check, "host", FAIL if clashes else PASS, f"unique {field}s",
                          ", ".join(clashes) or "unique",
                          f"give each service its own {field}; repeated: {', '.join(clashes)}"
                          if clashes else ""))
    out.append(dependency_check(services, catalog))
    out.append(gpu_inventory_check(services, catalog))
    problems = waiver_problems(host_vars.get("airlift_waivers") or [])
    out.append(result("inventory.waivers", "host", FAIL if problems else PASS,
                      "waivers of known checks with justification and expiry date",
                      "; ".join(problems) or "valid", "; ".join(problems)))
    return out


def dependency_check(services: list[Mapping[str, Any]],
                     catalog: Mapping[str, Any]) -> dict[str, Any]:
    """Each needed service present on the host, unambiguous and without cycles."""
    known = [service for service in services
             if service.get("catalog") in catalog and service.get("name")]
    try:
        plan = frontdoor.dependencies(known, catalog)
    except frontdoor.FrontdoorError as exc:
        return result("inventory.dependencies", "host", FAIL, "needed services on the host",
                      "missing or ambiguous", str(exc))
    pairs = [f"{name} -> {', '.join(entry['depends_on'])}"
             for name, entry in plan.items() if entry["depends_on"]]
    return result("inventory.dependencies", "host", PASS, "needed services on the host",
                  "; ".join(pairs) or "none needed", "")


def gpu_inventory_check(services: list[Mapping[str, Any]],
                        catalog: Mapping[str, Any]) -> dict[str, Any]:
    """The host's GPU assignment can be made (valid gpus, no two services on one GPU
    unless both share); it needs no facts, so render and deploy make the same one."""
    try:
        plan = gpu.assign([s for s in services if s.get("name")], catalog)
    except gpu.GpuError as exc:
        return result("inventory.gpus", "host", FAIL, "valid gpus, distinct or shared GPUs",
                      "conflicting or invalid", str(exc))
    return result("inventory.gpus", "host", PASS, "valid gpus, distinct or shared GPUs",
                  describe_plan(plan) or "no GPU service")


def describe_plan(plan: Mapping[str, Mapping[str, Any]]) -> str:
    return "; ".join(f"{name} -> GPU {', '.join(map(str, item['devices']))}"
                     if item["devices"] != gpu.ALL else f"{name} -> all GPUs"
                     for name, item in plan.items())


def clock_check(facts: Mapping[str, Any], thresholds: Mapping[str, Any]) -> dict[str, Any]:
    """The clock in MHz as measured, against the minimum in MHz, with the source named.

    A hypervisor shows a host's nominal clock in /proc/cpuinfo as measured by the guest
    kernel (2596.146 MHz for a 2.6 GHz part), so such a reading within clock_tolerance
    below the minimum counts as the minimum, with a note; anything lower fails. Only a
    cpuinfo reading is measured: cpufreq and the model string state the rated clock
    exactly, so for them a reading below the minimum is a slower part and fails.
    """
    min_mhz = float(thresholds.get("min_ghz", 2.6)) * 1000
    tolerance = float(thresholds.get("clock_tolerance", 0.005))
    mhz = float(facts.get("cpu_max_mhz") or 0)
    source = facts.get("cpu_mhz_source", "unknown")
    expected = f">= {min_mhz:.0f} MHz"
    observed = f"{mhz:.0f} MHz ({source})"
    if mhz >= min_mhz:
        return result("host.cpu_clock", "host", PASS, expected, observed)
    if source == "cpuinfo" and mhz >= min_mhz * (1 - tolerance):
        return result("host.cpu_clock", "host", PASS, expected, observed,
                      f"{mhz:.3f} MHz is within {tolerance * 100:g} % of {min_mhz:.0f} MHz: "
                      "read as that nominal clock (a hypervisor's measured reading)")
    below = (f"more than {tolerance * 100:g} % under it" if source == "cpuinfo" else
             f"{source} states the rated clock, no tolerance applies")
    return result("host.cpu_clock", "host", FAIL, expected, observed,
                  f"the CPU runs below {min_mhz:.0f} MHz ({below}): use a faster host, "
                  "or waive host.cpu_clock with a justification")


def gpu_checks(facts: Mapping[str, Any], services: list[Mapping[str, Any]],
               catalog: Mapping[str, Any]) -> list[dict]:
    """GPUs of the host against the host's GPU assignment: enough of them, enough memory
    on each for the services on it (summed when they share), the driver answering and
    the engine able to hand them over. Nothing for a host without GPU services."""
    try:
        plan = gpu.assign(services, catalog)
    except gpu.GpuError:
        return []  # inventory.gpus reports it, before any host is contacted
    if not plan:
        return []
    out = []
    host_gpus = {int(g.get("index", i)): g for i, g in enumerate(facts.get("gpus") or [])}
    driver = facts.get("gpu_driver")
    out.append(result("host.gpu_driver", "host", PASS if driver else FAIL,
                      "nvidia-smi answers", f"driver {driver}" if driver else
                      "nvidia-smi missing or failing",
                      "" if driver else "install the NVIDIA driver on the host so that "
                      "nvidia-smi lists its GPUs, then " + gpu.FIX_TOOLKIT))
    needed = gpu.gpus_needed(plan)
    enough = len(host_gpus) >= needed
    out.append(result("host.gpu_count", "host", PASS if enough else FAIL,
                      f">= {needed} GPU(s) ({describe_plan(plan)})", f"{len(host_gpus)}",
                      "" if enough else
                      f"the services need {needed} GPU(s), the host has {len(host_gpus)}: "
                      "move a GPU service to another host, let services share "
                      "(gpu_shared: true on each), ask for fewer (gpus: 1), or add GPUs"))
    need = gpu.memory_per_gpu(plan, sorted(host_gpus))
    for name, item in plan.items():
        vendor = catalog[next(s["catalog"] for s in services if s["name"] == name)]["gpu"].get(
            "vendor", "nvidia")
        indices = sorted(host_gpus) if item["devices"] == gpu.ALL else item["devices"]
        wanted, seen, short = [], [], []
        for index in indices:
            total, names = need.get(index, (item["memory_mb"], [name]))
            together = f" with {', '.join(n for n in names if n != name)}" if len(names) > 1 \
                else ""
            wanted.append(f"GPU {index} >= {format_mb(total)}{together}")
            have = host_gpus.get(index)
            if have is None:
                seen.append(f"GPU {index} absent")
                short.append(index)
                continue
            seen.append(f"GPU {index} {have['name']} {format_mb(have['memory_mb'])}")
            if have["memory_mb"] < total:
                short.append(index)
        if not indices:
            seen, short = ["no GPU"], [None]
        out.append(result("host.gpu", name, FAIL if short else PASS,
                          f"{vendor} " + ("; ".join(wanted) or "GPU"), "; ".join(seen),
                          "" if not short else
                          "not enough GPU memory or GPUs: give the service another GPU "
                          "(gpus: [N]), stop sharing, or move it to a host with larger GPUs"))
    out.append(runtime_check(facts, plan))
    return out


def runtime_check(facts: Mapping[str, Any], plan: Mapping[str, Mapping[str, Any]]) -> dict:
    """podman hands GPUs over through CDI: every device the units name must be in a CDI
    spec (/etc/cdi, /var/run/cdi); docker through --gpus: the NVIDIA hook or runtime.

    docker's own CDI route (docker >= 25 with features.cdi) is not used: Debian's
    docker.io is 20.10 and has no CDI, so a CDI spec alone does not make a docker host
    pass; the failure says so and names the toolkit fix.
    """
    if facts.get("engine", "podman") == "docker":
        runtimes = facts.get("docker_runtimes") or []
        hook = facts.get("nvidia_hook")
        ok = bool(hook) or "nvidia" in runtimes
        return result("host.gpu_runtime", "host", PASS if ok else FAIL,
                      "docker --gpus (nvidia-container-runtime-hook or the nvidia runtime)",
                      hook or ("runtimes " + ", ".join(runtimes) if runtimes else "neither"),
                      "" if ok else f"docker units hand GPUs over with --gpus, not CDI: "
                      f"{gpu.FIX_DOCKER}")
    known = set(facts.get("cdi_devices") or [])
    wanted = sorted({device for item in plan.values() for device in gpu.podman_devices(item)})
    missing = [device for device in wanted if device not in known]
    specs = facts.get("cdi_specs") or []
    return result("host.gpu_runtime", "host", FAIL if missing else PASS,
                  f"CDI devices {', '.join(wanted)}",
                  (f"in {', '.join(specs)}" if not missing else
                   f"{', '.join(missing)} in no CDI spec"
                   + (f" (specs: {', '.join(specs)})" if specs else
                      " (no spec in /etc/cdi or /var/run/cdi)")),
                  "" if not missing else f"podman hands GPUs over through CDI: {gpu.FIX_TOOLKIT}")


def frontdoor_checks(services: list[Mapping[str, Any]], route_options: Mapping[str, Any],
                     cert_problems: list[str], facts: Mapping[str, Any] | None = None,
                     ) -> list[dict]:
    """The front door of one host: routes it can serve, its certificate, its ports.

    Without facts (deploy runs no gathering) the ports are not checked.
    """
    out = []
    try:
        plan = frontdoor.routes(services, **route_options)
    except frontdoor.FrontdoorError as exc:
        out.append(result("frontdoor.routes", "host", FAIL, "every service routable",
                          "not routable", str(exc)))
        plan = None
    else:
        out.append(result("frontdoor.routes", "host", PASS, "every service routable",
                          ", ".join(f"{server['name']} on {server['port']}"
                                    for server in plan["servers"]) or "no service exposed"))
    out.append(result("frontdoor.certificate", "host", FAIL if cert_problems else PASS,
                      "valid, names the host, from the airlift CA",
                      "has problems" if cert_problems else "valid", "; ".join(cert_problems)))
    if plan is not None and facts:
        listening = set(facts.get("listening_ports") or [])
        ours = "airlift-frontdoor.service" in set(facts.get("active_units") or [])
        taken = sorted(port for port in plan["ports"] if port in listening and not ours)
        out.append(result("frontdoor.ports", "host", FAIL if taken else PASS,
                          "front-door ports free", ", ".join(map(str, taken)) or "free",
                          f"another program listens on {', '.join(map(str, taken))}: set "
                          "frontdoor.port of that service or airlift_frontdoor_port_offset"
                          if taken else ""))
    return out


def waiver_problems(waivers: Iterable[Mapping[str, Any]]) -> list[str]:
    """What is wrong with the waivers, each with its fix; empty when all are usable."""
    problems = []
    for waiver in waivers:
        check = waiver.get("check")
        if check not in HOST_CHECKS:
            problems.append(f"unknown check id {check!r} (waivable: "
                            f"{', '.join(sorted(HOST_CHECKS))})")
            continue
        if not str(waiver.get("justification") or "").strip():
            problems.append(f"waiver of {check} needs a justification")
        try:
            _as_date(waiver.get("expires"))
        except (TypeError, ValueError):
            problems.append(f"waiver of {check} needs expires as a date (YYYY-MM-DD), "
                            f"got {waiver.get('expires')!r}")
    return problems


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def assigned(service: Mapping[str, Any], entry: Mapping[str, Any]) -> tuple[float, int]:
    """Cores and memory (MiB) a service gets: its own values, else the catalog minimum."""
    cores = float(service.get("cpus") or entry["cores"]["minimum"])
    memory = to_mb(service.get("memory") or entry["memory"]["minimum"])
    return cores, memory


def service_minimums(service: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, float]:
    extra = max(int(service.get("language_pairs", 1)) - 1, 0)
    per_extra = to_mb(entry.get("memory_per_extra", 0))
    return {
        "cores_min": float(entry["cores"]["minimum"]),
        "cores_rec": float(entry["cores"]["recommended"]),
        "memory_min": to_mb(entry["memory"]["minimum"]) + extra * per_extra,
        "memory_rec": to_mb(entry["memory"]["recommended"]) + extra * per_extra,
    }


def images_mb(sizes: Iterable[int]) -> float:
    """MiB images take on a host while they are delivered: each archive and its loaded copy."""
    return sum(2 * size for size in sizes) / (1 << 20)


def bundle_needs(services: Iterable[Mapping[str, Any]], catalog: Mapping[str, Any],
                 manifest: Mapping[str, Any] | None) -> float | None:
    """MiB the host's images need (archive + loaded image), or None without a bundle."""
    if not manifest:
        return None
    sizes = {image["ref"]: image.get("size", 0) for image in manifest.get("images", [])}
    refs = {catalog[s["catalog"]]["image"] for s in services}
    return images_mb(sizes.get(ref, 0) for ref in refs)


def disk_short(need_mb: float, free_mb: Mapping[str, float]) -> dict[str, float]:
    """The paths with less free space (MiB) than needed: host.disk's FAIL rule.

    Preflight reports it per path; distribute refuses a transfer by the same rule, so
    the two never disagree about a host's disk.
    """
    return {path: free for path, free in sorted(free_mb.items()) if free < need_mb}


def transfer_refusal(sizes: list[int], free_mb: Mapping[str, float], headroom: float,
                     staging_dir: str) -> str | None:
    """Why distribute must not start moving images of these sizes (bytes), or None.

    The need is preflight's for a host without any of the images (archive + loaded
    image, times the headroom), counted for the images about to move only; a host that
    has them all needs nothing. The message names each short path, the need, what is
    free and the fix.
    """
    need = images_mb(sizes) * headroom
    short = disk_short(need, free_mb)
    if not short:
        return None
    where = "; ".join(f"{path} has {format_mb(free)} free" for path, free in short.items())
    fix = ("free space there"
           + (", or set airlift_distribute_staging_dir to a directory on a larger disk"
              if staging_dir in short else ""))
    return (f"not enough disk on the host: {len(sizes)} image(s) need {format_mb(need)} "
            f"free on each of {', '.join(sorted(free_mb))} (archive + loaded image, times "
            f"airlift_preflight_disk_headroom {headroom:g}, as preflight's host.disk); "
            f"{where}: {fix}")


def license_checks(services: Iterable[Mapping[str, Any]], catalog: Mapping[str, Any],
                   manifest: Mapping[str, Any], warning_days: int,
                   now: dt.datetime | None = None) -> list[dict]:
    now = now or dt.datetime.now(dt.UTC)
    out = []
    for service in services:
        key = service["catalog"]
        expiries = [lic.get("expires") for lic in manifest.get("licenses", [])
                    if lic.get("catalog") == key]
        if not expiries:
            out.append(result("host.license", service["name"], FAIL, f"a license for {key}",
                              "none in the bundle", "stage the bundle again for this service"))
            continue
        expires = min(as_utc(e) for e in expiries if e) if any(expiries) else None
        if expires is None:
            out.append(result("host.license", service["name"], WARN, "a known expiry",
                              "unknown", "set airlift_stage_license_expires when staging"))
            continue
        days = (expires - now).days
        status = FAIL if days < 0 else WARN if days < warning_days else PASS
        out.append(result("host.license", service["name"], status,
                          f"valid for >= {warning_days} days", f"expires {expires.date()}",
                          "expired: renew it on the connected side" if status == FAIL else
                          "renew it soon on the connected side" if status == WARN else ""))
    return out


def host_checks(facts: Mapping[str, Any], services: Iterable[Mapping[str, Any]],
                catalog: Mapping[str, Any], thresholds: Mapping[str, Any],
                manifest: Mapping[str, Any] | None = None) -> list[dict]:
    """Evaluate gathered facts against the services assigned to the host.

    With a bundle manifest, free disk is checked against what the host's images need
    and each service's license against its expiry.
    """
    services = [s for s in services if s.get("catalog") in catalog]
    out = []
    arch = facts.get("architecture")
    out.append(result("host.architecture", "host", PASS if arch == "x86_64" else FAIL,
                      "x86_64", arch))
    out.append(clock_check(facts, thresholds))
    flags = set(facts.get("cpu_flags") or [])
    total_cores, total_memory = 0.0, 0
    for service in services:
        name, entry = service["name"], catalog[service["catalog"]]
        for check, wanted, miss in (("host.cpu_flags", entry.get("cpu_flags") or [], FAIL),
                                    ("host.cpu_flags_recommended",
                                     entry.get("cpu_flags_recommended") or [], WARN)):
            if wanted:
                lacking = sorted(set(wanted) - flags)
                out.append(result(check, name, miss if lacking else PASS, ", ".join(wanted),
                                  ", ".join(sorted(flags & set(wanted))) or "none",
                                  f"missing {', '.join(lacking)}" if lacking else ""))
        cores, memory = assigned(service, entry)
        total_cores += cores
        total_memory += memory
        need = service_minimums(service, entry)
        for check, value, low, rec, shown in (
            ("service.cores", cores, need["cores_min"], need["cores_rec"], f"{cores:g}"),
            ("service.memory", memory, need["memory_min"], need["memory_rec"],
             format_mb(memory)),
        ):
            unit = format_mb if check == "service.memory" else (lambda v: f"{v:g}")
            status = FAIL if value < low else WARN if value < rec else PASS
            out.append(result(check, name, status,
                              f">= {unit(low)} (recommended {unit(rec)})", shown,
                              "below the catalog minimum" if status == FAIL else
                              "below the recommended value" if status == WARN else ""))
    usable = float(facts.get("cores_usable") or 0)
    out.append(result("host.cores", "host", PASS if total_cores <= usable else FAIL,
                      f"{total_cores:g}", f"{usable:g}",
                      "" if total_cores <= usable else
                      "the services need more cores than the host can give: move a service "
                      "or lower its cpus"))
    tolerance = float(thresholds.get("memory_tolerance", 0.05))
    have = int(facts.get("memory_total_mb") or 0)
    fits = have >= total_memory * (1 - tolerance)
    out.append(result("host.memory", "host", PASS if fits else FAIL, format_mb(total_memory),
                      format_mb(have), "" if fits else
                      "the services need more memory than the host has: move a service "
                      "or lower its memory"))
    bundle_mb = bundle_needs(services, catalog, manifest)
    need_disk = (float(thresholds.get("disk_required_mb", 0)) if bundle_mb is None
                 else bundle_mb) * float(thresholds.get("disk_headroom", 1.0))
    disk_free = facts.get("disk_free_mb") or {}
    short = disk_short(need_disk, disk_free)
    for path, free in sorted(disk_free.items()):
        out.append(result("host.disk", path, FAIL if path in short else PASS,
                          f">= {format_mb(need_disk)}", format_mb(free)))
    out.extend(gpu_checks(facts, services, catalog))
    out.append(engine_check(facts))
    out.append(result("host.init", "host", PASS if facts.get("init_is_systemd") else FAIL,
                      "systemd", "systemd" if facts.get("init_is_systemd") else "other"))
    listening = set(facts.get("listening_ports") or [])
    ours = set(facts.get("active_units") or [])
    for service in services:
        port = service.get("port")
        taken = port in listening and f"airlift-{service['name']}.service" not in ours
        out.append(result("host.ports", service["name"], FAIL if taken else PASS,
                          f"port {port} free", f"port {port} in use" if taken else "free",
                          "another program listens on it: choose another port" if taken
                          else ""))
    if manifest:
        out.extend(license_checks(services, catalog, manifest,
                                  int(thresholds.get("license_warning_days", 30))))
    return out


def apply_waivers(results: list[dict], waivers: Iterable[Mapping[str, Any]],
                  today: dt.date | None = None) -> list[dict]:
    """A waived failure stays visible as WAIVED; an expired waiver fails the check."""
    today = today or dt.date.today()
    waivers = list(waivers or [])
    out = []
    for item in results:
        item = dict(item)
        matching = [w for w in waivers if w.get("check") == item["id"]
                    and w.get("subject") in (None, item["subject"])]
        if item["status"] in (FAIL, WARN) and matching:
            # Several waivers may match (a renewal next to the old one): the latest counts.
            waiver = max(matching, key=lambda w: _as_date(w.get("expires")))
            expires = _as_date(waiver.get("expires"))
            if expires < today:
                item["message"] = (f"waiver expired on {expires}: renew it or fix the "
                                   f"host ({waiver.get('justification', '')})")
            else:
                item["status"] = WAIVED
                item["message"] = f"waived until {expires}: {waiver.get('justification')}"
                # For the compliance page's waiver table (days to expiry).
                item["waiver"] = {"expires": expires.isoformat(),
                                  "justification": str(waiver.get("justification") or "")}
        out.append(item)
    return out


def summary(results: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = Counter(item["status"] for item in results)
    return {status: counts.get(status, 0) for status in (PASS, FAIL, WARN, WAIVED)}


def failures(results: Iterable[Mapping[str, Any]]) -> list[str]:
    return [f"{item['id']} [{item['subject']}]: expected {item['expected']}, observed "
            f"{item['observed']}" + (f" - {item['message']}" if item["message"] else "")
            for item in results if item["status"] == FAIL]
