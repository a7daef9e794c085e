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


def test_before_and_after_are_each_divided_by_the_naive_run(tmp_path: Path):
    """--before DIR: both airlift runs in the table, each with its own ratio to naive."""
    def side(seconds: float) -> dict:
        return {"seconds": seconds, "seconds_per_host": seconds / 10, "cpu_seconds": seconds,
                "peak_tree_rss_mib": 100.0, "task_results": 10}

    naive, before, after = side(10.0), side(12.0), side(8.0)
    entry = {"naive": naive, "before": before, "airlift": after,
             "ratio": bench.side_ratio(after, naive),
             "ratio_before": bench.side_ratio(before, naive)}
    assert entry["ratio"]["seconds"] == 0.8
    assert entry["ratio_before"]["seconds"] == 1.2
    lines = bench.fleet_controller_md({"forks": 20, "failing": False, "10": entry})
    rows = [line for line in lines if line.startswith("| 10 |")]
    assert [row.split(" | ")[1] for row in rows] == ["naive", "airlift before", "airlift"]
    assert rows[1].split(" | ")[7] == "1.20" and rows[2].split(" | ")[7] == "0.80"
    (tmp_path / "COMMIT").write_text("abc1234\n")
    assert bench.commit_of(tmp_path) == "abc1234"
