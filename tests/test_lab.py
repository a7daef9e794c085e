"""The lab fleet: real systemd hosts without network, reached by podman exec and by SSH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra
from conftest import ROOT

from airlift import lab, labssh, podman

pytestmark = pytest.mark.lab
HOSTS = lab.host_names(2)


def airlift(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airlift.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, check=False)


@pytest.fixture(scope="module")
def fleet():
    lab.up(len(HOSTS))
    return HOSTS


def ansible(inventory: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    return subprocess.run(["ansible", "all", "-i", inventory, "--limit", ",".join(HOSTS), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)


@pytest.mark.parametrize("inventory", ["inventories/lab", "inventories/lab-ssh"])
def test_ping_through_each_inventory(fleet, inventory):
    proc = ansible(inventory, "-m", "ansible.builtin.ping")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(HOSTS)


def test_ssh_inventory_really_uses_ssh(fleet):
    proc = ansible("inventories/lab-ssh", "-m", "ansible.builtin.command",
                   "-a", "printenv SSH_CONNECTION")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # sshd in inetd mode sets SSH_CONNECTION with no peer address; podman exec sets none.
    assert "UNKNOWN 65535 UNKNOWN 65535" in proc.stdout


def test_nothing_leaves_the_hosts(fleet):
    # lo only, besides the bridge podman makes inside a host for its own containers (and
    # veths enslaved to it); and no route out of the host.
    for name in fleet:
        for link in json.loads(podman.run(["exec", name, "ip", "-j", "link"]).stdout):
            assert link["ifname"] == "lo" or link["ifname"].startswith("cni-podman") or \
                link.get("master", "").startswith("cni-podman"), link
        routes = json.loads(podman.run(["exec", name, "ip", "-j", "route"]).stdout)
        assert not [route for route in routes if route.get("dst") == "default"]


def test_a_new_host_has_only_loopback():
    name = "airlift-lab-probe"
    podman.run(["run", "--detach", "--rm", "--name", name, *lab.HOST_RUN_OPTIONS,
                lab.ensure_host_image()])
    try:
        lab.wait_for_systemd(name)
        links = json.loads(podman.run(["exec", name, "ip", "-j", "link"]).stdout)
        assert [link["ifname"] for link in links] == ["lo"]
    finally:
        podman.run(["rm", "--force", "--time", "2", name], check=False)


def test_paramiko_connects_with_pinned_host_keys(fleet):
    import paramiko

    ssh_dir = labssh.ssh_dir()
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.load_host_keys(str(ssh_dir / "known_hosts"))
    sock = paramiko.ProxyCommand(f"podman exec -i {fleet[0]} /usr/sbin/sshd -i -e")
    client.connect(fleet[0], username="root", key_filename=str(ssh_dir / "id_ed25519"),
                   sock=sock, timeout=20)
    _, stdout, _ = client.exec_command("hostname")
    assert stdout.read().decode().strip() == fleet[0]
    client.close()


# testinfra's paramiko backend ignores UserKnownHostsFile and warns; the pinned keys are
# proven by the test above.
@pytest.mark.filterwarnings("ignore:Unknown ssh-ed25519 host key")
def test_testinfra_over_paramiko_through_the_ssh_config(fleet):
    config = labssh.ssh_config_path()
    host = testinfra.get_host(f"paramiko://{fleet[0]}", ssh_config=str(config))
    assert host.check_output("hostname") == fleet[0]
    assert host.service("systemd-journald").is_running


def test_second_up_changes_nothing_and_reboot_keeps_disk(fleet):
    name = fleet[-1]
    podman.run(["exec", name, "sh", "-c", "echo kept > /var/lib/airlift-marker"])
    proc = airlift("lab", "up", str(len(fleet)))
    assert proc.returncode == 0, proc.stderr
    assert "0 host(s) started" in proc.stdout
    lab.stop([name])
    assert podman.container_state(name) == "exited"
    proc = airlift("lab", "up", str(len(fleet)))
    assert "1 host(s) started" in proc.stdout, proc.stdout
    marker = podman.run(["exec", name, "cat", "/var/lib/airlift-marker"]).stdout.strip()
    assert marker == "kept"
    assert podman.run(["exec", name, "systemctl", "is-system-running"],
                      check=False).stdout.strip() in {"running", "degraded"}


def test_host_whose_processes_were_killed_behind_podmans_back_is_recreated(fleet):
    # What a machine's stop does: conmon and the host's init die together, no exit file
    # is written and podman keeps calling the host running.
    name = fleet[-1]
    pids = podman.run(["inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}}", name])
    for pid in pids.stdout.split():
        os.kill(int(pid), 9)
    assert podman.is_stale(name)
    assert "stale" in airlift("lab", "status").stdout
    proc = airlift("lab", "up", str(len(fleet)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "processes are gone" in proc.stdout
    assert not podman.is_stale(name)
    assert podman.run(["exec", name, "systemctl", "is-system-running"],
                      check=False).stdout.strip() in {"running", "degraded"}
    ping = ansible("inventories/lab", "-m", "ansible.builtin.ping")
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_reap_removes_only_stale_project_containers(fleet, sim_images):
    live = "airlift-test-reap-live"
    dead = "airlift-test-reap-dead"
    image = sim_images["sentiment"]
    try:
        for name in (live, dead):
            podman.run(["run", "--detach", "--name", name, "--network", "none",
                        "--entrypoint", "sleep", image, "600"])
        pids = podman.run(["inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}}", dead])
        for pid in pids.stdout.split():
            os.kill(int(pid), 9)
        proc = airlift("lab", "reap")
        assert proc.returncode == 0, proc.stderr
        # Other stale hosts (left by a killed session) may be reaped too; only ours is certain.
        assert f"{dead}: podman records it as up" in proc.stdout
        assert live not in proc.stdout
        assert podman.container_state(dead) is None
        assert podman.container_state(live) == "running"
        assert all(podman.container_state(name) == "running" for name in fleet)
    finally:
        for name in (live, dead):  # one at a time: podman stops at the first missing name
            podman.run(["rm", "--force", "--ignore", "--time", "0", name], check=False)


def test_missing_podman_is_named_with_the_fix(tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    proc = airlift("lab", "up", "1", env=env)
    assert proc.returncode == 2
    assert "apt-get install podman runc" in proc.stderr


def test_failed_image_build_leaves_no_image(monkeypatch):
    monkeypatch.setenv("AIRLIFT_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
    ref = "localhost/airlift-test-broken:1"
    with pytest.raises(lab.LabError, match="debootstrap failed"):
        lab.build_rootfs_image(ref, ["python3-minimal"], lambda rootfs: None, [])
    assert not podman.image_exists(ref)
    assert not podman.image_exists(f"{ref}-partial")
    assert not list(Path(lab.cache_dir()).glob("airlift-rootfs-*"))


def test_failed_simulator_build_is_never_taken_for_cached(tmp_path):
    base = lab.ensure_sim_base()
    ref = "localhost/airlift-test-broken-sim:1"
    (tmp_path / "Containerfile").write_text(f"FROM {base}\nRUN exit 3\n")
    try:
        # An older build of the same name, from another recipe.
        podman.run(["tag", base, ref])
        with pytest.raises(podman.PodmanError, match="podman build"):
            lab._build(tmp_path / "Containerfile", tmp_path, ref, {}, "recipe-2")
        assert not lab._has_recipe(ref, "recipe-2")
    finally:
        podman.run(["rmi", "--ignore", ref], check=False)
    with pytest.raises(podman.PodmanError):
        lab._build(tmp_path / "Containerfile", tmp_path, ref, {}, "recipe-2")
    assert not podman.image_exists(ref)


def test_host_that_dies_at_boot_names_the_inotify_limit(monkeypatch):
    failed = subprocess.CompletedProcess([], 255, "", "")
    monkeypatch.setattr(podman, "run", lambda *args, **kwargs: failed)
    monkeypatch.setattr(podman, "container_state", lambda name: "exited")
    with pytest.raises(lab.LabError, match=r"sysctl -w fs\.inotify\.max_user_instances=512"):
        lab.wait_for_systemd("airlift-lab-20", timeout=30)
