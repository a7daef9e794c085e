"""The docker variant of the lab host: its recipe, its daemon settings, how hosts are named
and grouped. No host is started here (the lab tests run the docker host itself)."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import ROOT

from airlift import lab


def test_docker_host_packages_swap_podman_for_docker_io():
    podman_host = lab.host_packages("podman")
    docker_host = lab.host_packages("docker")
    assert "docker.io" in docker_host and "docker.io" not in podman_host
    # No podman on a docker host: nothing can pass on it by using podman by mistake.
    assert not {"podman", "containernetworking-plugins"} & set(docker_host)
    assert set(podman_host) - {"podman", "containernetworking-plugins"} <= set(docker_host)


def test_each_engine_has_its_own_recipe_and_the_podman_image_stays_cached():
    podman_hash = lab.recipe_hash(lab.host_recipe("podman"), lab.SUITE)
    assert podman_hash == lab.recipe_hash([ROOT / "lab" / "host"], lab.SUITE)
    assert lab.recipe_hash(lab.host_recipe("docker"), lab.SUITE) != podman_hash
    with pytest.raises(lab.LabError, match="engine 'rkt': give one of podman, docker"):
        lab.host_recipe("rkt")


def test_nested_dockerd_uses_vfs_and_a_private_cgroup_namespace():
    # Without the private namespace runc fails on cgroup v1: "error mounting cgroup to
    # rootfs at /sys/fs/cgroup"; overlay on the host's overlay is refused.
    daemon = json.loads((ROOT / "lab/host-docker/overlay/etc/docker/daemon.json").read_text())
    assert daemon == {"storage-driver": "vfs", "default-cgroupns-mode": "private"}


def test_docker_hosts_are_named_apart_and_grouped_for_the_engine():
    assert lab.docker_host_names(2) == ["airlift-lab-docker-1", "airlift-lab-docker-2"]
    assert [lab.host_engine(name) for name in ("airlift-lab-1", "airlift-lab-docker-1")] \
        == ["podman", "docker"]
    for inventory in ("lab", "lab-ssh"):
        plugin = yaml.safe_load((ROOT / "inventories" / inventory / "fleet.podman.yml")
                                .read_text())
        assert plugin["groups"]["lab_docker"] == \
            f"labels.get('{lab.ENGINE_LABEL}') == 'docker'"
        group_vars = ROOT / "inventories" / inventory / "group_vars/lab_docker/airlift.yml"
        assert yaml.safe_load(group_vars.read_text())["airlift_container_engine"] == "docker"


def test_negative_docker_count_is_refused_before_any_host(monkeypatch):
    monkeypatch.setattr(lab, "require_tools", lambda *_: pytest.fail("went on"))
    with pytest.raises(lab.LabError, match="-1 docker hosts: give 0 or more"):
        lab.up(1, docker=-1)
