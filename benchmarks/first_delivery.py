"""First delivery of a large image to one lab host, then a converged re-run.

Measures, for the distribute playbook:
  * disk bytes written and read machine-wide (/proc/diskstats, after `sync`) during the
    first delivery, per byte of archive: the transfer writes the archive once and the
    load writes the image once, so about 2 is the floor; reads of a freshly written
    archive come from the page cache;
  * wall time of the first delivery and of a converged re-run, and the bytes the re-run
    transferred (from the run's own results).

The lab host and the controller share this machine's disk, so run it with nothing else
going on. Usage: python benchmarks/first_delivery.py [--padding-mb 1024] [--host NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from airlift import lab, podman
from airlift.paths import project_root

ROOT = project_root()
SECTOR = 512


def disk_bytes() -> tuple[int, int]:
    """Bytes read and written on whole disks (not partitions) since boot."""
    subprocess.run(["sync"], check=True)
    read = written = 0
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        name = fields[2]
        # Whole disks only (partitions would count twice); no loop, ram or dm devices.
        skipped = ("loop", "ram", "zram", "dm-")
        if not Path(f"/sys/block/{name}").exists() or name.startswith(skipped):
            continue
        read += int(fields[5]) * SECTOR
        written += int(fields[9]) * SECTOR
    return read, written


def playbook(inventory: Path, name: str, *extra: str) -> tuple[float, dict]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    start = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", str(inventory), f"playbooks/{name}",
                           *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return elapsed, json.loads(proc.stdout)


def transferred(result: dict, host: str) -> int:
    for play in result["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith("Transfer and load only the images this host lacks"):
                return task["hosts"][host].get("transferred_bytes", 0)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--padding-mb", type=int, default=1024)
    parser.add_argument("--host", default="airlift-lab-1")
    args = parser.parse_args()
    os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "lab" / "containers.conf"))

    lab.up(int(args.host.rsplit("-", 1)[1]))
    image = lab.ensure_simulator_images(services=["sentiment"], padding_mb=args.padding_mb)[0]
    work = Path(tempfile.mkdtemp(prefix="airlift-bench-"))
    keys = work / "keys"
    subprocess.run(["airlift", "bundle", "keygen", "--out", str(keys)], check=True,
                   capture_output=True)
    group_vars = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/airlift.yml").read_text())
    group_vars.update({
        "ansible_connection": "containers.podman.podman",
        "airlift_services": [{"name": "sentiment", "catalog": "sim-sentiment", "port": 5000}],
        "airlift_catalog_overrides": {"sim-sentiment": {"image": image.ref}},
        "airlift_stage_signing_key": str(keys / "bundle-signing.key"),
        "airlift_stage_bundle_dir": str(work / "bundle"),
        "airlift_distribute_bundle_dir": str(work / "bundle"),
        "airlift_distribute_public_key": str(keys / "bundle-signing.pub"),
    })
    inventory = work / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"vars": group_vars,
                                                 "hosts": {args.host: {}}}}))
    playbook(inventory, "stage.yml")
    manifest = json.loads((work / "bundle" / "manifest.json").read_text())
    archive = next(i for i in manifest["images"] if i["ref"] == image.ref)["size"]
    podman.run(["exec", args.host, "podman", "rmi", "--force", image.ref], check=False)

    before = disk_bytes()
    first_time, first = playbook(inventory, "distribute.yml")
    after = disk_bytes()
    again_time, again = playbook(inventory, "distribute.yml")
    read, written = after[0] - before[0], after[1] - before[1]
    print(json.dumps({
        "archive_bytes": archive,
        "first_delivery": {
            "seconds": round(first_time, 2),
            "transferred_bytes": transferred(first, args.host),
            "disk_written_per_archive_byte": round(written / archive, 2),
            "disk_read_per_archive_byte": round(read / archive, 2),
            "disk_read_plus_written_per_archive_byte": round((read + written) / archive, 2),
        },
        "converged_rerun": {
            "seconds": round(again_time, 2),
            "transferred_bytes": transferred(again, args.host),
            "changed": again["stats"][args.host]["changed"],
        },
        "converged_over_first_time": round(again_time / first_time, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
