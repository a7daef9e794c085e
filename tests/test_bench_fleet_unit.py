"""bench.py fleet-controller's parts that need no ansible-playbook run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench


def test_tree_rss_counts_the_children_too():
    """Forks hold memory of their own: the peak is of the tree, not one process."""
    alone = bench.tree_rss_bytes(os.getpid())
    child = subprocess.Popen([sys.executable, "-c",
                              "import time; x = bytearray(64 * 2**20); time.sleep(30)"])
    try:
        for _ in range(100):
            with_child = bench.tree_rss_bytes(os.getpid())
            if with_child - alone > 60 * 2**20:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert with_child - alone > 60 * 2**20
    finally:
        child.kill()
        child.wait()


def test_local_fleet_runs_the_lab_services_and_waives_init_unless_failing(tmp_path: Path):
    lab = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/airlift.yml").read_text())
    for failing in (False, True):
        folder = tmp_path / str(failing)
        inventory = yaml.safe_load(bench.local_fleet(folder, 7, failing).read_text())
        hosts = inventory["all"]["hosts"]
        assert len(hosts) == 7
        assert inventory["all"]["vars"]["ansible_connection"] == "local"
        settings = yaml.safe_load((folder / "group_vars/all/airlift.yml").read_text())
        assert settings["airlift_services"] == lab["airlift_services"]
        waived = [waiver["check"] for waiver in settings["airlift_waivers"]]
        assert "host.cpu_clock" in waived
        assert ("host.init" in waived) is not failing
