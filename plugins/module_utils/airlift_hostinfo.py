# Apache-2.0
"""Read what a host can give its containers: pure parsers plus thin readers.

Shared by the airlift_host_facts module (runs on the host's python3, stdlib only) and
the unit tests, which feed the parsers synthetic /proc and sysfs text.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess

MODEL_CLOCK = re.compile(r"@\s*([0-9]+(?:\.[0-9]+)?)\s*GHz", re.IGNORECASE)


def parse_cpuinfo(text: str) -> tuple[str, float, set[str]]:
    """Return (model, highest 'cpu MHz', flags) from /proc/cpuinfo text."""
    model, mhz, flags = "", 0.0, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and not model:
            model = value
        elif key == "cpu MHz":
            with contextlib.suppress(ValueError):
                mhz = max(mhz, float(value))
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, mhz, flags


def max_clock_mhz(sysfs_max_khz: int, cpuinfo_mhz: float, model: str) -> tuple[float, str]:
    """The CPU's maximum clock and where it came from, most trustworthy source first.

    cpufreq's cpuinfo_max_freq is the rated maximum; /proc/cpuinfo shows the current
    clock (may be throttled down); the model string carries the nominal clock for Intel.
    """
    if sysfs_max_khz:
        return round(sysfs_max_khz / 1000.0, 1), "cpufreq"
    match = MODEL_CLOCK.search(model or "")
    model_mhz = float(match.group(1)) * 1000 if match else 0.0
    if model_mhz and model_mhz >= cpuinfo_mhz:
        return round(model_mhz, 1), "model"
    if cpuinfo_mhz:
        # As measured (2596.146): preflight shows it and applies its tolerance to it.
        return round(cpuinfo_mhz, 3), "cpuinfo"
    return 0.0, "unknown"


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 cpu.max ('max 100000' or '200000 100000') -> cores allowed, or None."""
    parts = (text or "").split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = int(parts[0]), int(parts[1])
    return quota / period if period else None


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """cgroup v1 cfs_quota_us / cfs_period_us -> cores allowed, or None."""
    try:
        quota, period = int(quota_text), int(period_text)
    except (TypeError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_cpuset(text: str) -> int | None:
    """'0-3,6' -> 5 CPUs; empty -> None."""
    count = 0
    for part in (text or "").strip().split(","):
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            count += int(high) - int(low) + 1
        else:
            count += 1
    return count or None


def usable_cores(affinity: int, cgroup_quota_cores: float | None) -> float:
    """Cores a container on this host can really use: affinity capped by a cgroup quota."""
    cores = float(affinity)
    if cgroup_quota_cores:
        cores = min(cores, cgroup_quota_cores)
    return round(cores, 2)


def parse_meminfo(text: str) -> tuple[int, int]:
    """MemTotal and MemAvailable in MiB."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and key in ("MemTotal", "MemAvailable"):
            values[key] = int(fields[0]) // 1024
    return values.get("MemTotal", 0), values.get("MemAvailable", 0)


def parse_memory_limit(text: str) -> int | None:
    """cgroup memory.max / limit_in_bytes -> MiB, or None when unlimited."""
    text = (text or "").strip()
    if not text or text == "max":
        return None
    value = int(text)
    # cgroup v1 reports "unlimited" as a huge page-aligned number.
    if value >= 1 << 60:
        return None
    return value // (1024 * 1024)


def parse_listening_ports(text: str) -> set[int]:
    """TCP ports in LISTEN state (st 0A) from /proc/net/tcp or tcp6 text."""
    ports = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def read(path: str, default: str = "") -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return default


def cgroup_cpu_quota() -> float | None:
    quota = parse_cpu_max(read("/sys/fs/cgroup/cpu.max"))
    if quota is None:
        quota = parse_cfs(read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1"),
                          read("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "0"))
    return quota


def cgroup_memory_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        text = read(path)
        if text:
            return parse_memory_limit(text)
    return None


def nearest_existing(path: str) -> str:
    """Free space is asked of the deepest existing directory of a path not made yet."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def disk_free_mb(path: str) -> int:
    return shutil.disk_usage(nearest_existing(path)).free // (1024 * 1024)


def command_output(argv: list[str], timeout: float = 15) -> str | None:
    """stdout of a command, or None when it is missing or fails."""
    if not shutil.which(argv[0]):
        return None
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version",
                    "--format=csv,noheader,nounits"]
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")


def parse_nvidia_smi(text: str | None) -> list[dict[str, object]]:
    """`nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,
    noheader,nounits` -> [{index, name, memory_mb, driver}]; the older two-column form
    (name, memory) is read too, numbered in order."""
    gpus = []
    for line in (text or "").splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) >= 3 and parts[0].isdigit() and parts[2].isdigit():
            gpus.append({"index": int(parts[0]), "name": parts[1], "memory_mb": int(parts[2]),
                         "driver": parts[3] if len(parts) > 3 else ""})
        elif len(parts) >= 2 and parts[1].isdigit():
            gpus.append({"index": len(gpus), "name": parts[0], "memory_mb": int(parts[1]),
                         "driver": ""})
    return gpus


def _yaml_scalar(value: str) -> str:
    value = value.split(" #", 1)[0].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


def parse_cdi_spec(text: str) -> list[str]:
    """Fully qualified device names (kind=name) a CDI spec provides, JSON or YAML.

    Hosts need not have PyYAML, so YAML is read by indentation: the top-level `kind`,
    and the `name` of each item of the top-level `devices` list (the layout nvidia-ctk
    writes). Anything else in the spec is not needed here.
    """
    text = text or ""
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return []
        kind = doc.get("kind", "")
        return [f"{kind}={d.get('name')}" for d in doc.get("devices") or []
                if kind and isinstance(d, dict) and d.get("name") is not None]
    kind, names, top, item_indent = "", [], "", None
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#") or raw.strip() == "---":
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        if indent == 0 and not line.startswith("- "):
            key, _, value = line.partition(":")
            top, item_indent = key.strip(), None
            if top == "kind":
                kind = _yaml_scalar(value)
            continue
        if top != "devices":
            continue
        if line.startswith("- ") and (item_indent is None or indent + 2 == item_indent):
            item_indent = indent + 2
            line, indent = line[2:].strip(), item_indent
        if indent == item_indent and line.startswith("name:"):
            names.append(_yaml_scalar(line.partition(":")[2]))
    return [f"{kind}={name}" for name in names] if kind else []


def cdi_devices(dirs: tuple[str, ...] = CDI_DIRS) -> tuple[list[str], list[str]]:
    """(device names, spec files) of the CDI specs podman reads."""
    devices, specs = [], []
    for folder in dirs:
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.endswith((".yaml", ".yml", ".json")):
                path = os.path.join(folder, entry)
                found = parse_cdi_spec(read(path))
                if found:
                    specs.append(path)
                    devices.extend(d for d in found if d not in devices)
    return devices, specs


def docker_runtimes() -> list[str]:
    """Runtimes docker knows (the NVIDIA one is 'nvidia'), or [] without docker."""
    text = command_output(["docker", "info", "--format", "{{json .Runtimes}}"])
    try:
        return sorted(json.loads(text or "{}"))
    except (ValueError, TypeError):
        return []


def active_units(units: list[str]) -> list[str]:
    """The subset of units systemd reports as active, in one systemctl call."""
    if not units or not shutil.which("systemctl"):
        return []
    try:
        # is-active prints one state per unit and exits non-zero if any is inactive.
        proc = subprocess.run(["systemctl", "is-active", *units], capture_output=True,
                              text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    states = proc.stdout.split()
    return [unit for unit, state in zip(units, states, strict=False) if state == "active"]


def gather(paths: list[str], engine: str, units: list[str] | tuple[str, ...] = (),
           ) -> dict[str, object]:
    """Everything preflight needs to know about this host, in one dictionary."""
    model, cpuinfo_mhz, flags = parse_cpuinfo(read("/proc/cpuinfo"))
    sysfs = read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    mhz, mhz_source = max_clock_mhz(int(sysfs) if sysfs.isdigit() else 0, cpuinfo_mhz, model)
    affinity = len(os.sched_getaffinity(0))
    total_mb, available_mb = parse_meminfo(read("/proc/meminfo"))
    limit_mb = cgroup_memory_limit()
    if limit_mb is not None:
        total_mb, available_mb = min(total_mb, limit_mb), min(available_mb, limit_mb)
    ports = parse_listening_ports(read("/proc/net/tcp")) | parse_listening_ports(
        read("/proc/net/tcp6"))
    # docker's client answers without its daemon: ask the daemon (the server) instead.
    side = "Server" if engine == "docker" else "Client"
    engine_version = command_output([engine, "version", "--format", f"{{{{.{side}.Version}}}}"])
    gpus = parse_nvidia_smi(command_output(NVIDIA_SMI_QUERY))
    devices, specs = cdi_devices()
    return {
        "architecture": os.uname().machine,
        "cpu_model": model,
        "cpu_max_mhz": mhz,
        "cpu_mhz_source": mhz_source,
        "cpu_flags": sorted(flag for flag in flags if flag.startswith(("avx", "sse4"))),
        "cores_online": affinity,
        "cores_usable": usable_cores(affinity, cgroup_cpu_quota()),
        "memory_total_mb": total_mb,
        "memory_available_mb": available_mb,
        "disk_free_mb": {path: disk_free_mb(path) for path in paths},
        "engine": engine,
        "engine_version": engine_version,
        "engine_installed": bool(shutil.which(engine)),
        "init_is_systemd": os.path.isdir("/run/systemd/system"),
        "listening_ports": sorted(ports),
        "gpus": gpus,
        # The driver's version when nvidia-smi answered with at least one GPU.
        "gpu_driver": next((str(g["driver"]) or "unknown" for g in gpus), None),
        "cdi_devices": devices,
        "cdi_specs": specs,
        "nvidia_hook": shutil.which("nvidia-container-runtime-hook"),
        "docker_runtimes": docker_runtimes() if engine == "docker" else [],
        "active_units": active_units(list(units)),
    }
