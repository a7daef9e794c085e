"""airlift against the naive playbook, side by side, reported as ratios.

    python benchmarks/bench.py [converged|first-delivery|fleet-scaling|callback|preflight ...]
    (or `make bench`, which runs them all)
    python benchmarks/bench.py fleet-controller --hosts 50 100 300 [--failing] [--before DIR]
    (airlift's own controller cost: preflight against benchmarks/naive/preflight.yml on N
    inventory hosts with the local connection; no lab needed; with --before, another
    checkout's preflight too, e.g. `git archive main | tar -x -C DIR`)

Each benchmark runs both approaches on the same lab hosts, images and machine, one after
the other, and records wall time, bytes moved, disk bytes read and written machine-wide
(/proc/diskstats after `sync`; the lab hosts share this machine's disk), images loaded,
changed count, controller CPU seconds (Ansible and its podman/ssh clients) and machine CPU
seconds (/proc/stat: the lab hosts run on the same cores). Results go to
benchmarks/results/<date>.json and Markdown tables beside it, with the machine's
description. Absolute times on these machines are noisy: read the ratios, and the medians
of `converged --repeat`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from airlift import lab, podman
from airlift.paths import project_root

ROOT = project_root()
SECTOR = 512
NAIVE = ROOT / "benchmarks" / "naive"
# Ansible's own default; the project's ansible.cfg sets 20, so it is passed explicitly.
DEFAULT_FORKS = 5
MAX_FORKS = 50
# A host that finished booting still settles for a few seconds (journald, timers).
MEMORY_SETTLE_SECONDS = 10
MIB = 1024 * 1024


def disk_bytes() -> tuple[int, int]:
    """Bytes read and written on whole disks since boot (after sync)."""
    subprocess.run(["sync"], check=True)
    read = written = 0
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        name = fields[2]
        if not Path(f"/sys/block/{name}").exists() or name.startswith(("loop", "ram", "zram",
                                                                        "dm-")):
            continue
        read += int(fields[5]) * SECTOR
        written += int(fields[9]) * SECTOR
    return read, written


def cpu_seconds() -> float:
    """CPU of this process's finished children: ansible-playbook, its forks and clients."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine: the lab hosts' work is not our children."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0]
              .split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def mem_available() -> int:
    """MemAvailable in bytes: what the kernel could hand out without swapping."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no MemAvailable in /proc/meminfo")


def measure(args: list[str], cfg: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one ansible-playbook with the JSON callback; time, disk, CPU and its stats."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(cfg),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", **(env or {})}
    disk0, cpu0 = disk_bytes(), cpu_seconds()
    busy0, start = machine_cpu_seconds(), time.monotonic()
    proc = subprocess.run(["ansible-playbook", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)
    seconds = time.monotonic() - start
    busy1 = machine_cpu_seconds()
    disk1, cpu1 = disk_bytes(), cpu_seconds()
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)
    return {"seconds": seconds, "cpu_seconds": cpu1 - cpu0, "machine_cpu_seconds": busy1 - busy0,
            "disk_read": disk1[0] - disk0[0], "disk_written": disk1[1] - disk0[1],
            "changed": sum(stats["changed"] for stats in result["stats"].values()),
            "task_results": count_task_results(result), "result": result}


def count_task_results(result: dict) -> int:
    """Task results that ran (not skipped), over all hosts: each costs connection calls."""
    return sum(1 for play in result["plays"] for task in play["tasks"]
               for host_result in task["hosts"].values() if not host_result.get("skipped"))


def task_results(result: dict, suffix: str) -> list[dict]:
    out = []
    for play in result["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith(suffix):
                for host_result in task["hosts"].values():
                    out.extend(host_result.get("results") or [host_result])
    return out


class Fleet:
    """Lab hosts with one padded simulator service, a signed bundle and both inventories."""

    def __init__(self, hosts: int, padding_mb: int) -> None:
        os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "lab" / "containers.conf"))
        lab.up(hosts)
        self.hosts = lab.host_names(hosts)
        self.image = lab.ensure_simulator_images(services=["sentiment"],
                                                 padding_mb=padding_mb)[0]
        self.work = Path(tempfile.mkdtemp(prefix="airlift-bench-"))
        keys = self.work / "keys"
        subprocess.run([sys.executable, "-m", "airlift.cli", "bundle", "keygen", "--out",
                        str(keys)], check=True, capture_output=True)
        base = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/airlift.yml").read_text())
        base.update({
            "airlift_services": [{"name": "sentiment", "catalog": "sim-sentiment",
                                  "port": 5000}],
            "airlift_catalog_overrides": {"sim-sentiment": {"image": self.image.ref}},
            "airlift_stage_signing_key": str(keys / "bundle-signing.key"),
            "airlift_stage_bundle_dir": str(self.work / "bundle"),
            "airlift_distribute_bundle_dir": str(self.work / "bundle"),
            "airlift_distribute_public_key": str(keys / "bundle-signing.pub"),
            "airlift_report_dir": str(self.work / "reports"),
        })
        self.vars = base
        self.inventory("exec")
        measure(["-i", str(self.work / "inventory-exec.yml"), "playbooks/stage.yml"],
                ROOT / "ansible.cfg")
        manifest = json.loads((self.work / "bundle" / "manifest.json").read_text())
        image = next(item for item in manifest["images"] if item["ref"] == self.image.ref)
        license_file = next(item for item in manifest["licenses"]
                            if item["catalog"] == "sim-sentiment")
        self.archive_bytes = image["size"]
        self.vars["naive_services"] = [{
            "name": "sentiment", "port": 6000, "image": self.image.ref,
            "archive": str(self.work / "bundle" / image["archive"]),
            "license": str(self.work / "bundle" / license_file["path"])}]
        self.vars["naive_run_options"] = self.vars.get("airlift_deploy_run_options", [])

    def inventory(self, transport: str) -> Path:
        connection = ({"ansible_connection": "containers.podman.podman"} if transport == "exec"
                      else {"ansible_connection": "ansible.builtin.ssh",
                            "ansible_ssh_common_args":
                                f"-F {ROOT / 'lab/.state/ssh/ssh_config'}"})
        path = self.work / f"inventory-{transport}.yml"
        path.write_text(yaml.safe_dump({"all": {
            "vars": {**self.vars, **connection},
            "hosts": {host: {} for host in self.hosts}}}))
        return path

    def forget_images(self) -> None:
        """Remove the image and the naive tarball from every host: a first delivery."""
        for host in self.hosts:
            podman.run(["exec", host, "sh", "-c",
                        f"podman rm -af >/dev/null 2>&1; systemctl stop airlift-sentiment "
                        f"naive-sentiment 2>/dev/null; podman rmi -f {self.image.ref}; "
                        "rm -f /var/tmp/naive-*.tar /var/lib/airlift/state/images.json"],
                       check=False)

    def reset(self) -> None:
        """Return every host to how `lab up` made it: a first run, not a half-converged one.

        forget_images leaves units, licenses and state behind, so airlift's next run would
        only load images; a first run on a new host also writes all of those.
        """
        reset_hosts(self.hosts)

    def settle(self) -> None:
        """Wait until every started service answers /ready and the disk is quiet.

        With the lab's vfs storage a container start copies its image; that must not
        land in the next measured run.
        """
        probe = ("import sys, time, urllib.request as u\n"
                 "deadline = time.time() + 180\n"
                 "for port in sys.argv[1:]:\n"
                 "    while time.time() < deadline:\n"
                 "        try:\n"
                 "            u.urlopen(f'http://127.0.0.1:{port}/ready', timeout=3); break\n"
                 "        except OSError:\n"
                 "            time.sleep(1)\n")
        for host in self.hosts:
            units = podman.run(["exec", host, "sh", "-c",
                                "systemctl is-active airlift-sentiment naive-sentiment"],
                               check=False).stdout.split()
            ports = [port for port, state in zip(("5000", "6000"), units, strict=False)
                     if state == "active"]
            podman.run(["exec", host, "python3", "-c", probe, *ports], check=False)
        subprocess.run(["sync"], check=True)

    def cleanup(self) -> None:
        """Leave the lab hosts without the naive services and files, and drop the bundle."""
        for host in self.hosts:
            podman.run(["exec", host, "sh", "-c",
                        "systemctl disable --now naive-sentiment 2>/dev/null; "
                        "rm -rf /etc/systemd/system/naive-*.service /var/tmp/naive-*.tar "
                        "/var/lib/naive; systemctl daemon-reload"], check=False)
        shutil.rmtree(self.work, ignore_errors=True)

    def airlift(self, transport: str, deliver_only: bool = False,
                forks: int | None = None) -> dict[str, Any]:
        inventory = str(self.inventory(transport))
        fork_args = ["-f", str(forks)] if forks else []
        self.settle()
        first = measure(["-i", inventory, "playbooks/distribute.yml", *fork_args],
                        ROOT / "ansible.cfg")
        second = None if deliver_only else measure(
            ["-i", inventory, "playbooks/deploy.yml", *fork_args], ROOT / "ansible.cfg")
        loads = task_results(first["result"], "Transfer and load only the images this host lacks")
        return combine(first, second, {
            "bytes_transferred": sum(item.get("transferred_bytes", 0) for item in loads),
            "images_loaded": sum(len(item.get("loaded") or []) for item in loads)})

    def naive(self, transport: str, deliver_only: bool = False,
              forks: int | None = None) -> dict[str, Any]:
        self.settle()
        tags = ["--tags", "deliver"] if deliver_only else []
        fork_args = ["-f", str(forks)] if forks else []
        run = measure(["-i", str(self.inventory(transport)), str(NAIVE / "site.yml"), *tags,
                       *fork_args], NAIVE / "ansible.cfg")
        copies = task_results(run["result"], "Copy each image tarball")
        loads = task_results(run["result"], "Load each image")
        return combine(run, None, {
            "bytes_transferred": self.archive_bytes * sum(1 for c in copies if c.get("changed")),
            "images_loaded": len(loads)})


def reset_hosts(hosts: list[str]) -> None:
    """Remove airlift's and the naive playbook's services, files and images from hosts."""
    script = ("for unit in $(systemctl list-unit-files --no-legend 'airlift-*' 'naive-*' "
              "| cut -d' ' -f1); do systemctl disable --now \"$unit\"; done 2>/dev/null; "
              "podman rm -af >/dev/null 2>&1; podman rmi -af >/dev/null 2>&1; "
              "rm -rf /etc/systemd/system/airlift-*.service /etc/systemd/system/naive-*.service "
              "/var/lib/airlift /var/lib/naive /var/tmp/naive-*.tar; systemctl daemon-reload")
    for host in hosts:
        podman.run(["exec", host, "sh", "-c", script], check=False)


def host_memory(hosts: list[str]) -> dict[str, float]:
    """Mean memory per lab host from its cgroup, in MiB, split by what can be reclaimed.

    anon (processes) + shmem + kernel cannot be reclaimed; cache is mostly the vfs copies
    of images and goes when memory runs short, so MemAvailable counts it as available.
    """
    totals = dict.fromkeys(("anon", "shmem", "kernel", "cache"), 0)
    for host in hosts:
        path = podman.run(["inspect", "--format", "{{.State.CgroupPath}}", host]).stdout.strip()
        v1 = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
        if v1.is_dir():
            stat = dict(line.split() for line in (v1 / "memory.stat").read_text().splitlines())
            values = {"anon": int(stat["total_rss"]), "shmem": int(stat["total_shmem"]),
                      "kernel": int((v1 / "memory.kmem.usage_in_bytes").read_text()),
                      "cache": int(stat["total_cache"]) - int(stat["total_shmem"])}
        else:
            v2 = Path("/sys/fs/cgroup") / path.lstrip("/")
            stat = dict(line.split() for line in (v2 / "memory.stat").read_text().splitlines())
            values = {"anon": int(stat["anon"]), "shmem": int(stat["shmem"]),
                      "kernel": int(stat["kernel"]),
                      "cache": int(stat["file"]) - int(stat["shmem"])}
        for key, value in values.items():
            totals[key] += value
    return {f"{key}_mib": round(value / len(hosts) / MIB, 1) for key, value in totals.items()}


def running_hosts() -> list[str]:
    return [host["name"] for host in lab.fleet() if host["state"] == "running"]


SUMMED = ("seconds", "cpu_seconds", "machine_cpu_seconds", "disk_read", "disk_written",
          "changed", "task_results")


def combine(first: dict, second: dict | None, extra: dict) -> dict[str, Any]:
    """One airlift run is two playbooks (distribute, deploy): their sums."""
    runs = [first] + ([second] if second else [])
    out = {key: round(sum(run[key] for run in runs), 2) for key in SUMMED}
    return {**out, **extra}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each measure's median over the runs (this machine is noisy), the runs kept beside."""
    keys = [key for key, value in runs[0].items() if isinstance(value, int | float)]
    medians = {key: round(statistics.median(run[key] for run in runs), 2) for key in keys}
    return {**medians, "runs": runs}


def ratios(airlift_result: dict, naive_result: dict) -> dict[str, Any]:
    def ratio(key: str) -> float | None:
        return round(airlift_result[key] / naive_result[key], 3) if naive_result[key] else None

    return {key: ratio(key) for key in ("seconds", "cpu_seconds", "disk_read", "disk_written",
                                        "bytes_transferred")}


_FLEETS: dict[tuple[int, int], Fleet] = {}


def fleet_of(hosts: int, padding_mb: int) -> Fleet:
    """One staged fleet per size and image, shared by the benchmarks of one invocation."""
    key = (hosts, padding_mb)
    if key not in _FLEETS:
        _FLEETS[key] = Fleet(*key)
    return _FLEETS[key]


def fleet_for(args: argparse.Namespace) -> Fleet:
    return fleet_of(args.hosts[0], args.padding_mb)


def converged(args: argparse.Namespace) -> dict[str, Any]:
    """Hosts already converged by both; run both again, --repeat times, alternating."""
    fleet = fleet_for(args)
    out: dict[str, Any] = {"hosts": args.hosts[0], "archive_bytes": fleet.archive_bytes,
                           "repeat": args.repeat}
    for transport in ("exec", "ssh"):
        fleet.airlift(transport)
        fleet.naive(transport)
        ours: list[dict[str, Any]] = []
        theirs: list[dict[str, Any]] = []
        for _ in range(args.repeat):
            ours.append(fleet.airlift(transport))
            theirs.append(fleet.naive(transport))
        mine, naive = median_of(ours), median_of(theirs)
        out[transport] = {"airlift": mine, "naive": naive, "ratio": ratios(mine, naive)}
    return out


def per_host(run: dict[str, Any], hosts: int) -> dict[str, Any]:
    return {**run, "seconds_per_host": round(run["seconds"] / hosts, 2),
            "cpu_seconds_per_host": round(run["cpu_seconds"] / hosts, 2),
            "machine_cpu_busy": round(run["machine_cpu_seconds"]
                                      / (run["seconds"] * (os.cpu_count() or 1)), 2)}


def fleet_scaling(args: argparse.Namespace) -> dict[str, Any]:
    """Time per host against fleet size, at Ansible's default forks and one fork per host.

    A first run of a small image (hosts reset to how `lab up` made them), then a converged
    re-run, over podman exec. The lab hosts share the controller's cores, so this finds
    where this machine stops scaling; MemAvailable around `lab up` says how many hosts fit.
    """
    inotify = Path("/proc/sys/fs/inotify/max_user_instances").read_text().strip()
    out: dict[str, Any] = {"transport": "exec", "padding_mb": 0, "default_forks": DEFAULT_FORKS,
                           "max_forks": MAX_FORKS, "inotify_max_user_instances": int(inotify)}
    for hosts in args.scaling_hosts:
        # Hosts already up from a smaller size run no service while memory is read.
        reset_hosts(running_hosts())
        time.sleep(MEMORY_SETTLE_SECONDS)
        before = mem_available()
        try:
            started = lab.up(hosts)
        except lab.LabError as error:
            # Each lab host's systemd and logind hold 4 to 6 of root's inotify instances: with
            # the kernel's default of 128, around 20 hosts the next cannot boot. Keep the rest.
            out[str(hosts)] = {"error": str(error)}
            break
        time.sleep(MEMORY_SETTLE_SECONDS)
        after_up = mem_available()
        idle_hosts = host_memory(lab.host_names(hosts))
        fleet = fleet_of(hosts, 0)
        row: dict[str, Any] = {"archive_bytes": fleet.archive_bytes}
        tuned = min(hosts, MAX_FORKS)
        for label, forks in (("default_forks", DEFAULT_FORKS), ("tuned_forks", tuned)):
            fleet.reset()
            print(f"[bench] fleet-scaling {hosts} hosts, {forks} forks", flush=True)
            first = fleet.airlift("exec", forks=forks)
            again = fleet.airlift("exec", forks=forks)
            row[label] = {"forks": forks, "first": per_host(first, hosts),
                          "converged": per_host(again, hosts)}
        fleet.settle()
        time.sleep(MEMORY_SETTLE_SECONDS)
        with_services = mem_available()
        row["memory"] = {
            "per_host_idle": idle_hosts,
            "per_host_with_service": host_memory(lab.host_names(hosts)),
            "hosts_started": len(started), "available_before_up": before,
            "available_after_up": after_up, "available_with_services": with_services,
            "mib_per_started_host": (round((before - after_up) / len(started) / MIB, 1)
                                     if started else None),
            "mib_per_service": round((after_up - with_services) / hosts / MIB, 1)}
        if args.scaling_naive:
            fleet.naive("exec", forks=tuned)
            ours, theirs = fleet.airlift("exec", forks=tuned), fleet.naive("exec", forks=tuned)
            ours, theirs = per_host(ours, hosts), per_host(theirs, hosts)
            row["converged_side_by_side"] = {"forks": tuned, "airlift": ours, "naive": theirs,
                                             "ratio": ratios(ours, theirs)}
        out[str(hosts)] = row
    return out


def first_delivery(args: argparse.Namespace) -> dict[str, Any]:
    """A large image to hosts that have none: (read + written) per archive byte; then the
    same delivery again on the now converged hosts, against the first.

    Delivery only (airlift's distribute.yml; the naive playbook's copy, load and license
    tasks): starting a service is the same for both, and with the lab's vfs storage it
    copies the whole image, which real hosts (overlay) do not.
    """
    fleet = fleet_for(args)
    out: dict[str, Any] = {"hosts": args.hosts[0], "archive_bytes": fleet.archive_bytes}
    for transport in ("exec",):
        results = {}
        for name in ("airlift", "naive"):
            fleet.forget_images()
            results[name] = getattr(fleet, name)(transport, deliver_only=True)
            moved = results[name]["disk_read"] + results[name]["disk_written"]
            results[name]["disk_rw_per_archive_byte_per_host"] = round(
                moved / fleet.archive_bytes / args.hosts[0], 2)
            # The same delivery again, now converged: what a re-run costs against the first.
            rerun = getattr(fleet, name)(transport, deliver_only=True)
            results[name]["rerun_seconds"] = rerun["seconds"]
            results[name]["rerun_over_first"] = round(rerun["seconds"]
                                                      / results[name]["seconds"], 3)
        out[transport] = {**results, "ratio": ratios(results["airlift"], results["naive"])}
    return out


def callback_cost(args: argparse.Namespace) -> dict[str, Any]:
    """Cost of the usage callback against none, junit and json, on cheap local hosts."""
    work = Path(tempfile.mkdtemp(prefix="airlift-bench-callback-"))
    playbook = ROOT / "tests" / "data" / "usage_emit.yml"
    out: dict[str, Any] = {}
    for hosts in args.callback_hosts:
        inventory = work / f"hosts-{hosts}.yml"
        usage = {"schema": 1, "collected_at": "2026-11-22T07:00:00Z", "services": [
            {"name": name, "catalog": f"sim-{name}", "collected_via": "running",
             "all_time": {"apiType": "X", "serviceName": name,
                          "meters": [{"name": f"{name}.Units", "quantity": 5}]},
             "months": {f"2026-{m:02d}": {"apiType": "X", "serviceName": name,
                                          "meters": [{"name": f"{name}.Units", "quantity": 1}]}
                        for m in range(1, 13)}}
            for name in ("sentiment", "read", "speech")]}
        inventory.write_text(yaml.safe_dump({"all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                     "airlift_usage": usage},
            "children": {"fleet": {"hosts": {f"h{index:04d}": {} for index in range(hosts)}}}}}))
        rows = {}
        for name, env in {
            "none": {},
            "airlift_usage": {"ANSIBLE_CALLBACKS_ENABLED": "airlift_usage",
                              "AIRLIFT_USAGE_REPORT_DIR": str(work / "reports")},
            "junit": {"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.junit",
                      "JUNIT_OUTPUT_DIR": str(work / "junit")},
            "json": {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
        }.items():
            rows[name] = peak_and_time(["-i", str(inventory), str(playbook), "-f", "20"], env)
        # A callback that did not load would measure nothing: check that each wrote.
        for folder in ("reports", "junit"):
            if not any((work / folder).iterdir()):
                raise SystemExit(f"no output in {work / folder}: a callback did not run")
        base = rows["none"]["seconds"]
        results = hosts * count_tasks(playbook)
        for row in rows.values():
            row["seconds_added_per_result"] = round((row["seconds"] - base) / results, 5)
        out[str(hosts)] = rows
    return out


def count_tasks(playbook: Path) -> int:
    plays = yaml.safe_load(playbook.read_text())
    return sum(len(play.get("tasks") or []) for play in plays)


def peak_and_time(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Wall time and peak RSS (MiB) of an ansible-playbook run, measured from a wrapper."""
    wrapper = ("import resource, subprocess, sys, time\n"
               "start = time.monotonic()\n"
               "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
               "print(time.monotonic() - start, "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)\n")
    # Ansible's defaults (no callback enabled) plus the project's callback folder.
    full_env = {**os.environ, "ANSIBLE_CONFIG": str(NAIVE / "ansible.cfg"),
                "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "plugins" / "callback"), **env}
    if "ANSIBLE_CALLBACKS_ENABLED" not in env:
        full_env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    proc = subprocess.run([sys.executable, "-c", wrapper, "ansible-playbook", *args],
                          cwd=ROOT, env=full_env, capture_output=True, text=True, check=True)
    seconds, rss_kb, rc = proc.stdout.split()
    # usage_emit.yml fails no host unless told to: anything else is a broken measurement.
    if rc != "0":
        raise SystemExit(f"ansible-playbook {args} with {env} exited {rc}: {proc.stderr[-2000:]}")
    return {"seconds": round(float(seconds), 2), "peak_rss_mib": round(int(rss_kb) / 1024, 1)}


def preflight(args: argparse.Namespace) -> dict[str, Any]:
    """Preflight time against the number of hosts: it should grow with hosts only."""
    out: dict[str, Any] = {}
    for hosts in args.preflight_hosts:
        lab.up(hosts)
        limit = ",".join(lab.host_names(hosts))
        run = measure(["-i", "inventories/lab", "--limit", limit, "playbooks/preflight.yml"],
                      ROOT / "ansible.cfg")
        out[str(hosts)] = {"seconds": round(run["seconds"], 2),
                           "seconds_per_host": round(run["seconds"] / hosts, 2)}
    return out


def tree_rss_bytes(root: int) -> int:
    """Resident bytes of a process and all its descendants (Ansible's main process and forks)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
        rss[int(entry.name)] = int(statm.split()[1]) * page
    total, todo = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def controller_run(args: list[str], cfg: Path, cwd: Path = ROOT) -> dict[str, Any]:
    """One ansible-playbook: wall time, CPU of it and its forks, peak RSS of the whole tree.

    The process tree's resident memory is sampled every 0.2 s (forks come and go, so the
    largest single process, ru_maxrss, understates what the controller needs).
    """
    env = {**os.environ, "ANSIBLE_CONFIG": str(cfg),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    cpu0, start = cpu_seconds(), time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(["ansible-playbook", *args], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.PIPE, text=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss_bytes(proc.pid))
            time.sleep(0.2)
        seconds = time.monotonic() - start
        stderr = proc.stderr.read() if proc.stderr else ""
        out.seek(0)
        stdout = out.read().decode()
    cpu = cpu_seconds() - cpu0
    # 2: some hosts failed their checks, which a preflight may well report.
    if proc.returncode not in (0, 2):
        raise SystemExit(f"{args} exited {proc.returncode}:\n{stdout[-3000:]}{stderr[-2000:]}")
    result = json.loads(stdout)
    stats = result["stats"]
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
            "peak_tree_rss_mib": round(peak / MIB, 1),
            "rc": proc.returncode, "task_results": count_task_results(result),
            "hosts_ok": sum(1 for s in stats.values() if not s["failures"]
                            and not s["unreachable"]),
            "hosts_failed": sum(1 for s in stats.values() if s["failures"])}


INIT_WAIVER = {"check": "host.init", "expires": "2999-12-31",
               "justification": "the benchmark's hosts are this controller, not run by systemd"}


def local_fleet(folder: Path, hosts: int, failing: bool = False) -> Path:
    """An inventory of N hosts on the local connection that all run the lab's services.

    The lab's settings (services, cpu_clock waiver); the controller is no systemd host,
    so host.init is waived too unless `failing`: then every host fails that one check.
    """
    names = [f"fleet-{index:04d}" for index in range(1, hosts + 1)]
    inventory = {"all": {"hosts": {name: None for name in names},
                         "vars": {"ansible_connection": "local",
                                  "ansible_python_interpreter": sys.executable}}}
    (folder / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    settings = yaml.safe_load((ROOT / "inventories" / "lab" / "group_vars" / "all"
                               / "airlift.yml").read_text())
    if not failing:
        settings["airlift_waivers"] = [*settings.get("airlift_waivers", []), INIT_WAIVER]
    (folder / "group_vars" / "all" / "airlift.yml").write_text(yaml.safe_dump(settings))
    path = folder / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def fleet_controller(args: argparse.Namespace) -> dict[str, Any]:
    """airlift's own controller cost: preflight against the naive play on N local hosts.

    With --before DIR (another checkout of airlift, e.g. `git archive main`), its
    preflight runs too, right before this one: before and after, side by side, each
    divided by the naive run made right after them (same load).
    """
    out: dict[str, Any] = {"forks": 20, "failing": args.failing}
    if args.before:
        out["before_commit"] = commit_of(args.before)
    for hosts in args.fleet_hosts:
        with tempfile.TemporaryDirectory() as tmp:
            inventory = local_fleet(Path(tmp), hosts, args.failing)
            common = ["-i", str(inventory), "--forks", "20"]
            sides: dict[str, dict[str, Any]] = {}
            if args.before:
                sides["before"] = controller_run(
                    [*common, "playbooks/preflight.yml", "-e",
                     f"airlift_report_dir={Path(tmp) / 'reports-before'}"],
                    args.before / "ansible.cfg", cwd=args.before)
            sides["airlift"] = controller_run(
                [*common, "playbooks/preflight.yml", "-e",
                 f"airlift_report_dir={Path(tmp) / 'reports'}"], ROOT / "ansible.cfg")
            sides["naive"] = controller_run([*common, str(NAIVE / "preflight.yml")],
                                            NAIVE / "ansible.cfg")
        for side in sides.values():
            side["seconds_per_host"] = round(side["seconds"] / hosts, 3)
            side["task_results_per_host"] = round(side["task_results"] / hosts, 2)
        entry: dict[str, Any] = {**sides, "ratio": side_ratio(sides["airlift"], sides["naive"])}
        if "before" in sides:
            entry["ratio_before"] = side_ratio(sides["before"], sides["naive"])
        out[str(hosts)] = entry
        print(f"[bench] fleet-controller {hosts} hosts: {json.dumps(entry)}", flush=True)
    return out


def side_ratio(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float | None]:
    return {key: round(ours[key] / theirs[key], 3) if theirs[key] else None
            for key in ("seconds", "cpu_seconds", "peak_tree_rss_mib")}


def commit_of(folder: Path) -> str:
    """The commit a checkout is at (a `git archive` export: the one recorded in it, or '-')."""
    proc = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False)
    if proc.returncode == 0 and Path(folder, ".git").exists():
        return proc.stdout.strip()
    marker = Path(folder, "COMMIT")
    return marker.read_text().strip() if marker.exists() else "-"


BENCHES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "converged": converged, "first-delivery": first_delivery, "fleet-scaling": fleet_scaling,
    "callback": callback_cost, "preflight": preflight, "fleet-controller": fleet_controller,
}


def machine() -> dict[str, Any]:
    memory = next(line for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    version = subprocess.run(["podman", "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    return {"cores": os.cpu_count(), "memory": " ".join(memory.split()[1:]),
            "podman": version, "python": platform.python_version(),
            "kernel": platform.release(), "commit": commit or "-"}


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table with columns of numbers right-aligned, so they line up by digit."""
    def numeric(column: int) -> bool:
        return all(re.fullmatch(r"[-\d.,() ]+", str(row[column])) for row in rows)

    align = ["---:" if rows and numeric(column) else "---" for column in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows), ""]


def num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f}"


def with_runs(side: dict[str, Any], key: str, fmt: Callable[[Any], str] = num) -> str:
    """A median followed by the individual runs it was taken from, when there were several."""
    runs = side.get("runs") or []
    if len(runs) < 2:
        return fmt(side.get(key))
    return f"{fmt(side.get(key))} ({', '.join(fmt(run.get(key)) for run in runs)})"


SIDE_BY_SIDE_ROWS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("wall time, s", "seconds", num), ("controller CPU, s", "cpu_seconds", num),
    ("machine CPU, s", "machine_cpu_seconds", num), ("disk read, MB", "disk_read", mb),
    ("disk written, MB", "disk_written", mb), ("bytes transferred, MB", "bytes_transferred", mb),
    ("images loaded", "images_loaded", num), ("changed", "changed", num),
    ("task results (all hosts)", "task_results", num),
    ("disk read + written per archive byte per host", "disk_rw_per_archive_byte_per_host", num),
    ("delivery re-run (converged), s", "rerun_seconds", num),
    ("re-run time / first delivery time", "rerun_over_first", num),
]


def side_by_side_md(data: dict[str, Any]) -> list[str]:
    """converged and first-delivery: one table per transport, airlift against naive."""
    lines = [f"{data['hosts']} hosts, archive {mb(data['archive_bytes'])} MB"
             + (f"; median of {data['repeat']} runs each, the runs in brackets"
                if data.get("repeat") else "") + ".", ""]
    for transport in ("exec", "ssh"):
        if transport not in data:
            continue
        ours, theirs, ratio = data[transport]["airlift"], data[transport]["naive"], \
            data[transport]["ratio"]
        rows = [[label, with_runs(ours, key, fmt), with_runs(theirs, key, fmt),
                 num(ratio.get(key), 3)]
                for label, key, fmt in SIDE_BY_SIDE_ROWS if key in ours or key in theirs]
        lines += [f"Transport {transport}:", "",
                  *table(["", "airlift", "naive", "airlift / naive"], rows)]
    return lines


def fleet_scaling_md(data: dict[str, Any]) -> list[str]:
    sizes = [key for key in data if key.isdigit() and "error" not in data[key]]
    lines = [f"Transport {data['transport']}, image padding {data['padding_mb']} MB; forks "
             f"{data['default_forks']} (Ansible's default) against one per host (at most "
             f"{data['max_forks']}). Machine CPU busy: busy CPU seconds of the whole machine "
             "over wall time times cores. fs.inotify.max_user_instances: "
             f"{data.get('inotify_max_user_instances', '-')}.", ""]
    lines += [f"Not measured at {key} hosts: {data[key]['error']}" for key in data
              if key.isdigit() and "error" in data[key]]
    if len(lines) > 2:
        lines.append("")
    rows = []
    for size in sizes:
        for label in ("default_forks", "tuned_forks"):
            run = data[size][label]
            rows.append([size, run["forks"], *(
                cell for phase in ("first", "converged") for cell in (
                    num(run[phase]["seconds"]), num(run[phase]["seconds_per_host"]),
                    num(run[phase]["cpu_seconds"]), num(run[phase]["machine_cpu_busy"])))])
    lines += table(["hosts", "forks", "first run, s", "s / host", "controller CPU, s",
                    "machine CPU busy", "converged, s", "s / host", "controller CPU, s",
                    "machine CPU busy"], rows)
    pairs = [(size, data[size]["converged_side_by_side"]) for size in sizes
             if "converged_side_by_side" in data[size]]
    if pairs:
        lines += ["Converged re-run beside the naive playbook, one fork per host:", ""]
        lines += table(["hosts", "forks", "airlift, s", "naive, s", "airlift / naive",
                        "airlift CPU, s", "naive CPU, s", "airlift task results",
                        "naive task results"],
                       [[size, pair["forks"], num(pair["airlift"]["seconds"]),
                         num(pair["naive"]["seconds"]), num(pair["ratio"]["seconds"], 3),
                         num(pair["airlift"]["cpu_seconds"]), num(pair["naive"]["cpu_seconds"]),
                         num(pair["airlift"]["task_results"]),
                         num(pair["naive"]["task_results"])] for size, pair in pairs])
    lines += ["Memory (MemAvailable, MiB): before and after `lab up`, then with one simulator "
              "service running on every host.", ""]
    lines += table(["hosts", "hosts started", "before up", "after up", "with services",
                    "per started host", "per service"],
                   [[size, memory["hosts_started"],
                     num(memory["available_before_up"] // MIB),
                     num(memory["available_after_up"] // MIB),
                     num(memory["available_with_services"] // MIB),
                     num(memory["mib_per_started_host"], 1), num(memory["mib_per_service"], 1)]
                    for size in sizes for memory in [data[size]["memory"]]])
    lines += ["Memory per lab host from its cgroup (mean, MiB): anon + shmem + kernel stay, "
              "the page cache (vfs image copies) can be reclaimed.", ""]
    rows = []
    for size in sizes:
        for label, key in (("idle", "per_host_idle"), ("one service", "per_host_with_service")):
            cgroup = data[size]["memory"].get(key)
            if cgroup:
                rows.append([size, label, *(num(cgroup[f"{part}_mib"], 1)
                                            for part in ("anon", "shmem", "kernel", "cache"))])
    lines += table(["hosts", "state", "anon", "shmem", "kernel", "page cache"], rows)
    return lines


def callback_md(data: dict[str, Any]) -> list[str]:
    return table(["hosts", "callback", "wall time, s", "peak RSS, MiB", "s added per result"],
                 [[hosts, name, num(row["seconds"]), num(row["peak_rss_mib"], 1),
                   num(row["seconds_added_per_result"], 5)]
                  for hosts, rows in data.items() for name, row in rows.items()])


def preflight_md(data: dict[str, Any]) -> list[str]:
    return table(["hosts", "wall time, s", "s / host"],
                 [[hosts, num(row["seconds"]), num(row["seconds_per_host"])]
                  for hosts, row in data.items()])


def fleet_controller_md(data: dict[str, Any]) -> list[str]:
    """Per size: naive, then each airlift run measured (before and after a change).

    Each airlift run is divided by the naive run made right after it (same load).
    """
    rows = []
    for size in (key for key in data if key.isdigit()):
        entry = data[size]
        sides = [("naive", entry["naive"], None)]
        if "before" in entry:
            sides.append(("airlift before", entry["before"], entry.get("ratio_before")))
        sides.append(("airlift", entry["airlift"], entry["ratio"]))
        for label, side, ratio in sides:
            rows.append([size, label, num(side["seconds"]), num(side["seconds_per_host"], 3),
                         num(side["cpu_seconds"]), num(side["peak_tree_rss_mib"], 1),
                         num(side["task_results"]),
                         num(ratio["seconds"], 2) if ratio else "-",
                         num(ratio["cpu_seconds"], 2) if ratio else "-",
                         num(ratio["peak_tree_rss_mib"], 2) if ratio else "-"])
    state = ("every airlift host failing host.init" if data.get("failing", True)
             else "every host passing")
    before = (f" \"airlift before\" is commit {data['before_commit']}, run right before "
              "this one." if data.get("before_commit") else "")
    return [f"Local connection, {data.get('forks', 20)} forks, {state}; peak RSS of the whole "
            f"ansible-playbook process tree (sampled every 0.2 s).{before}", "",
            *table(["hosts", "run", "wall, s", "s / host", "controller CPU, s",
                    "peak RSS, MiB", "task results", "wall / naive", "CPU / naive",
                    "RSS / naive"], rows)]


MARKDOWN: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "converged": side_by_side_md, "first-delivery": side_by_side_md,
    "fleet-scaling": fleet_scaling_md, "callback": callback_md, "preflight": preflight_md,
    "fleet-controller": fleet_controller_md, "fleet-controller-failing": fleet_controller_md,
}


def describe(info: dict[str, Any]) -> str:
    kib = int(str(info["memory"]).split()[0])
    return (f"{info['cores']} cores, {kib / 1024 / 1024:.1f} GiB memory, {info['podman']}, "
            f"Python {info['python']}, kernel {info['kernel']}; airlift commit "
            f"{info.get('commit', '-')}")


def markdown(results: dict[str, Any]) -> str:
    """Tables for people; the JSON beside it keeps every number."""
    lines = [f"# airlift benchmarks {results['date']}", "",
             f"Machine: {describe(results['machine'])}.", ""]
    for name, data in results["benchmarks"].items():
        lines += [f"## {name}", ""]
        run = results.get("runs", {}).get(name)
        if run:
            lines += [f"Ran {run['minutes']} min from {run['started']}, airlift commit "
                      f"{run['commit']}.", ""]
        try:
            lines += MARKDOWN[name](data)
        except (KeyError, TypeError, ValueError):
            # A result written by an older bench.py: show it as it is.
            lines += ["```json", json.dumps(data, indent=2), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--hosts", type=int, nargs="+", default=None,
                        help="lab hosts (converged, first-delivery; the first number, "
                        "default 3) or fleet sizes (fleet-controller, default 50 100)")
    parser.add_argument("--padding-mb", type=int, default=1024)
    parser.add_argument("--callback-hosts", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--preflight-hosts", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--scaling-hosts", type=int, nargs="+", default=[1, 5, 10, 20],
                        help="fleet-scaling: fleet sizes, smallest first (hosts are reused)")
    parser.add_argument("--no-scaling-naive", dest="scaling_naive", action="store_false",
                        help="fleet-scaling without the naive converged run beside airlift's")
    parser.add_argument("--failing", action="store_true",
                        help="fleet-controller: every host fails host.init (not waived)")
    parser.add_argument("--before", type=Path, default=None,
                        help="fleet-controller: also measure the preflight of this other "
                        "airlift checkout (e.g. `git archive main | tar -x -C DIR`)")
    parser.add_argument("--label", help="write results/<date>-LABEL.{json,md} instead of "
                        "results/<date>.{json,md} (a measurement beside the full run)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="converged: runs per side, alternating; the median is reported")
    args = parser.parse_args()
    args.fleet_hosts = args.hosts or [50, 100]
    args.hosts = args.hosts or [3]
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    unknown = sorted(set(args.names) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHES)}")
    today = dt.date.today().isoformat()
    folder = ROOT / "benchmarks" / "results"
    stem = f"{today}-{args.label}" if args.label else today
    path = folder / f"{stem}.json"
    # Benchmarks run separately on one day add up in that day's file.
    earlier = json.loads(path.read_text()) if path.exists() else {}
    results: dict[str, Any] = {"date": today, "machine": machine(),
                               "benchmarks": earlier.get("benchmarks", {}),
                               "runs": earlier.get("runs", {})}
    folder.mkdir(exist_ok=True)

    def save() -> None:
        path.write_text(json.dumps(results, indent=2, default=str))
        (folder / f"{stem}.md").write_text(markdown(results))

    try:
        for name in args.names or list(BENCHES):
            print(f"[bench] {name}", flush=True)
            started = time.monotonic()
            stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            results["benchmarks"][name] = BENCHES[name](args)
            results["runs"][name] = {"started": stamp, "commit": results["machine"]["commit"],
                                     "minutes": round((time.monotonic() - started) / 60, 1)}
            # Saved after each benchmark: a failure in a later one keeps the earlier ones.
            save()
    finally:
        for fleet in _FLEETS.values():
            fleet.cleanup()
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
