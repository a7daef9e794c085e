# Apache-2.0
"""Read what a host can give its containers: pure parsers plus thin readers.

Shared by the airlift_host_facts module (runs on the host's python3, stdlib only) and
the unit tests, which feed the parsers synthetic /proc and sysfs text.
"""

from __future__ import annotations

import contextlib
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
        return round(cpuinfo_mhz, 1), "cpuinfo"
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


def parse_nvidia_smi(text: str | None) -> list[dict[str, object]]:
    """`nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` -> list."""
    gpus = []
    for line in (text or "").splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) >= 2 and parts[1].isdigit():
            gpus.append({"name": parts[0], "memory_mb": int(parts[1])})
    return gpus


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
    engine_version = command_output([engine, "version", "--format", "{{.Client.Version}}"])
    gpus = parse_nvidia_smi(command_output(
        ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"]))
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
        "init_is_systemd": os.path.isdir("/run/systemd/system"),
        "listening_ports": sorted(ports),
        "gpus": gpus,
        "active_units": active_units(list(units)),
    }
