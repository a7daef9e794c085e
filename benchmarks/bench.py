"""airlift against the naive playbook, side by side, reported as ratios.

    python benchmarks/bench.py [converged|first-delivery|callback|preflight ...]
    (or `make bench`, which runs them all)

Each benchmark runs both approaches on the same lab hosts, images and machine, one after
the other, and records wall time, bytes moved, disk bytes read and written machine-wide
(/proc/diskstats after `sync`; the lab hosts share this machine's disk), images loaded,
changed count and controller CPU seconds. Results go to benchmarks/results/<date>.json
and a Markdown table beside it, with the machine's description. Absolute times on these
machines are noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
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
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(args: list[str], cfg: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one ansible-playbook with the JSON callback; time, disk, CPU and its stats."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(cfg),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", **(env or {})}
    disk0, cpu0, start = disk_bytes(), cpu_seconds(), time.monotonic()
    proc = subprocess.run(["ansible-playbook", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)
    seconds = time.monotonic() - start
    disk1, cpu1 = disk_bytes(), cpu_seconds()
    if proc.returncode != 0:
        raise SystemExit(f"{args} failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)
    return {"seconds": seconds, "cpu_seconds": cpu1 - cpu0,
            "disk_read": disk1[0] - disk0[0], "disk_written": disk1[1] - disk0[1],
            "changed": sum(stats["changed"] for stats in result["stats"].values()),
            "result": result}


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
        """Leave the lab hosts without the naive services and files."""
        for host in self.hosts:
            podman.run(["exec", host, "sh", "-c",
                        "systemctl disable --now naive-sentiment 2>/dev/null; "
                        "rm -rf /etc/systemd/system/naive-*.service /var/tmp/naive-*.tar "
                        "/var/lib/naive; systemctl daemon-reload"], check=False)

    def airlift(self, transport: str, deliver_only: bool = False) -> dict[str, Any]:
        inventory = str(self.inventory(transport))
        self.settle()
        first = measure(["-i", inventory, "playbooks/distribute.yml"], ROOT / "ansible.cfg")
        second = None if deliver_only else measure(["-i", inventory, "playbooks/deploy.yml"],
                                                   ROOT / "ansible.cfg")
        loads = task_results(first["result"], "Transfer and load only the images this host lacks")
        return combine(first, second, {
            "bytes_transferred": sum(item.get("transferred_bytes", 0) for item in loads),
            "images_loaded": sum(len(item.get("loaded") or []) for item in loads)})

    def naive(self, transport: str, deliver_only: bool = False) -> dict[str, Any]:
        self.settle()
        tags = ["--tags", "deliver"] if deliver_only else []
        run = measure(["-i", str(self.inventory(transport)), str(NAIVE / "site.yml"), *tags],
                      NAIVE / "ansible.cfg")
        copies = task_results(run["result"], "Copy each image tarball")
        loads = task_results(run["result"], "Load each image")
        return combine(run, None, {
            "bytes_transferred": self.archive_bytes * sum(1 for c in copies if c.get("changed")),
            "images_loaded": len(loads)})


def combine(first: dict, second: dict | None, extra: dict) -> dict[str, Any]:
    runs = [first] + ([second] if second else [])
    out = {key: round(sum(run[key] for run in runs), 2)
           for key in ("seconds", "cpu_seconds", "disk_read", "disk_written", "changed")}
    return {**out, **extra}


def ratios(airlift_result: dict, naive_result: dict) -> dict[str, Any]:
    def ratio(key: str) -> float | None:
        return round(airlift_result[key] / naive_result[key], 3) if naive_result[key] else None

    return {key: ratio(key) for key in ("seconds", "cpu_seconds", "disk_read", "disk_written",
                                        "bytes_transferred")}


_FLEETS: dict[tuple[int, int], Fleet] = {}


def fleet_for(args: argparse.Namespace) -> Fleet:
    """One staged fleet per size, shared by the benchmarks of one invocation."""
    key = (args.hosts, args.padding_mb)
    if key not in _FLEETS:
        _FLEETS[key] = Fleet(*key)
    return _FLEETS[key]


def converged(args: argparse.Namespace) -> dict[str, Any]:
    """Hosts already converged by both; run both again."""
    fleet = fleet_for(args)
    out: dict[str, Any] = {"hosts": args.hosts, "archive_bytes": fleet.archive_bytes}
    for transport in ("exec", "ssh"):
        fleet.airlift(transport)
        fleet.naive(transport)
        ours, theirs = fleet.airlift(transport), fleet.naive(transport)
        out[transport] = {"airlift": ours, "naive": theirs, "ratio": ratios(ours, theirs)}
    return out


def first_delivery(args: argparse.Namespace) -> dict[str, Any]:
    """A large image to hosts that have none: (read + written) per archive byte.

    Delivery only (airlift's distribute.yml; the naive playbook's copy, load and license
    tasks): starting a service is the same for both, and with the lab's vfs storage it
    copies the whole image, which real hosts (overlay) do not.
    """
    fleet = fleet_for(args)
    out: dict[str, Any] = {"hosts": args.hosts, "archive_bytes": fleet.archive_bytes}
    for transport in ("exec",):
        results = {}
        for name in ("airlift", "naive"):
            fleet.forget_images()
            results[name] = getattr(fleet, name)(transport, deliver_only=True)
            moved = results[name]["disk_read"] + results[name]["disk_written"]
            results[name]["disk_rw_per_archive_byte_per_host"] = round(
                moved / fleet.archive_bytes / args.hosts, 2)
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


BENCHES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "converged": converged, "first-delivery": first_delivery,
    "callback": callback_cost, "preflight": preflight,
}


def machine() -> dict[str, Any]:
    memory = next(line for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    version = subprocess.run(["podman", "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    return {"cores": os.cpu_count(), "memory": " ".join(memory.split()[1:]),
            "podman": version, "python": platform.python_version(),
            "kernel": platform.release()}


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# airlift benchmarks {results['date']}", "",
             f"Machine: {results['machine']}", ""]
    for name, data in results["benchmarks"].items():
        lines += [f"## {name}", "", "```json", json.dumps(data, indent=2), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--padding-mb", type=int, default=1024)
    parser.add_argument("--callback-hosts", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--preflight-hosts", type=int, nargs="+", default=[5, 10, 20])
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHES)}")
    today = dt.date.today().isoformat()
    folder = ROOT / "benchmarks" / "results"
    path = folder / f"{today}.json"
    # Benchmarks run separately on one day add up in that day's file.
    earlier = json.loads(path.read_text())["benchmarks"] if path.exists() else {}
    results: dict[str, Any] = {"date": today, "machine": machine(), "benchmarks": earlier}
    for name in args.names or list(BENCHES):
        print(f"[bench] {name}", flush=True)
        results["benchmarks"][name] = BENCHES[name](args)
    for fleet in _FLEETS.values():
        fleet.cleanup()
    folder.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    (folder / f"{today}.md").write_text(markdown(results))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
