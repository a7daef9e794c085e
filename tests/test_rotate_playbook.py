"""rotate.yml against the lab: a new image version and new licenses, host by host.

A rotation whose new service never gets ready is rolled back on the first host and
stops before the second; a good one replaces image and licenses everywhere and removes
the old image only after the new one is ready; a re-run changes nothing.

The fleet is one podman and one docker host (lab.mixed_fleet): podman first, so the
failed rotation rolls back podman and leaves docker untouched; a docker-only run shows
the rollback on docker; the good rotation replaces both.
"""

from __future__ import annotations

import json

import pytest
from conftest import flat, run_playbook
from test_deploy_playbook import bare, http, on, on_engine, wait_ready

from airlift import lab, podman

pytestmark = pytest.mark.lab
NEW_REF = "localhost/airlift-sim/sentiment:1.1"
OLD_REF = "localhost/airlift-sim/sentiment:1.0"
LICENSE_DIR = "/var/lib/airlift/licenses"


def limit(hosts: list[str]) -> list[str]:
    return ["--limit", ",".join(hosts)]


def image_of(host: str, container: str) -> str:
    return bare(on_engine(host, "inspect", "--format", "{{.Image}}", container))


def image_id(host: str, ref: str) -> str:
    return bare(on_engine(host, "image", "inspect", "--format", "{{.Id}}", ref))


def has_image(host: str, ref: str) -> bool:
    """Whether the host's engine has the image (name or ID)."""
    return podman.run(["exec", host, lab.host_engine(host), "image", "inspect", ref],
                      check=False).returncode == 0


def licenses(host: str) -> str:
    """Content of the licenses in service (not the ones kept aside), in path order."""
    return on(host, "sh", "-c", f"find {LICENSE_DIR} -type f ! -name '*.previous-*' "
              "| sort | xargs cat")


def units(host: str) -> str:
    return on(host, "cat", "/etc/systemd/system/airlift-sentiment.service",
              "/etc/systemd/system/airlift-read.service")


@pytest.fixture(scope="module")
def fleet():
    hosts = lab.mixed_fleet()
    assert run_playbook("playbooks/stage.yml").returncode == 0
    proc = run_playbook("site.yml", *limit(hosts))
    assert proc.returncode == 0, proc.stdout[-3000:]
    return hosts


@pytest.fixture(scope="module")
def new_bundle(fleet, tmp_path_factory):
    """A second bundle: sentiment 1.1 (a new image ID) and fresh licenses for both."""
    lab.ensure_simulator_images(version="1.1", services=["sentiment"])
    bundle = tmp_path_factory.mktemp("bundle-1.1") / "bundle"
    extra = {"airlift_stage_bundle_dir": str(bundle),
             "airlift_catalog_overrides": {"sim-sentiment": {"image": NEW_REF}}}
    proc = run_playbook("playbooks/stage.yml", "-e", json.dumps(extra))
    assert proc.returncode == 0, proc.stdout[-3000:]
    return {"airlift_distribute_bundle_dir": str(bundle),
            "airlift_catalog_overrides": {"sim-sentiment": {"image": NEW_REF}}}


def test_unset_public_key_is_refused_before_the_rollback_point(fleet):
    """Inside the rollout's block the refusal would run the rescue on the host."""
    proc = run_playbook("playbooks/rotate.yml", *limit(fleet[:1]),
                        "-e", "airlift_distribute_public_key=")
    assert proc.returncode != 0
    assert ("set airlift_distribute_public_key to the Ed25519 public key (PEM file) "
            "delivered to the bastion with the bundle") in flat(proc.stdout)
    assert "Save the rollback point" not in proc.stdout
    assert "Wait until no airlift service" not in proc.stdout


def broken_rotation(new_bundle: dict) -> str:
    """The new bundle with a setting that keeps sentiment from ever getting ready."""
    return json.dumps({**new_bundle,
                       "airlift_catalog_overrides": {"sim-sentiment": {"image": NEW_REF,
                                                                       "ready_timeout": 6}},
                       "airlift_services": [
                           {"name": "sentiment", "catalog": "sim-sentiment", "port": 5000,
                            "settings": {"Sim:WarmupSeconds": "not-a-number"}},
                           {"name": "read", "catalog": "sim-read", "port": 5001}]})


def test_failed_rotation_rolls_the_host_back_and_stops_before_the_next(fleet, new_bundle):
    first, second = fleet
    before = {host: (units(host), licenses(host)) for host in fleet}
    old_image = image_of(first, "airlift-sentiment")
    # A reused lab host may hold the new image from an earlier run: compare, not assume.
    second_had_new_image = has_image(second, NEW_REF)
    proc = run_playbook("playbooks/rotate.yml", *limit(fleet), "-e",
                        broken_rotation(new_bundle))
    assert proc.returncode != 0
    assert f"rotation failed on {first} and was rolled back" in proc.stdout, proc.stdout[-3000:]
    assert "airlift-sentiment did not answer /ready within 6 s" in proc.stdout
    # The first host runs exactly what it ran before: units, licenses, image.
    assert (units(first), licenses(first)) == before[first]
    assert image_of(first, "airlift-sentiment") == old_image
    assert http(first, 5000, "/ready") == 200 and http(first, 5001, "/ready") == 200
    # The new license came and went; the host never lost the one in service.
    assert on(first, "sh", "-c", f"ls {LICENSE_DIR}/sentiment | grep -c previous").strip() != "0"
    # max_fail_percentage 0: the second host was never touched.
    assert (units(second), licenses(second)) == before[second]
    assert has_image(second, NEW_REF) == second_had_new_image


def test_failed_rotation_on_docker_is_rolled_back_too(fleet, new_bundle):
    """The same failure on the docker host alone: its units, licenses and the image its
    container runs are back, and both services answer again."""
    host = fleet[1]
    assert lab.host_engine(host) == "docker"
    before = (units(host), licenses(host))
    old_image = image_of(host, "airlift-sentiment")
    proc = run_playbook("playbooks/rotate.yml", *limit([host]), "-e",
                        broken_rotation(new_bundle))
    assert proc.returncode != 0
    assert f"rotation failed on {host} and was rolled back" in proc.stdout, proc.stdout[-3000:]
    assert "airlift-sentiment did not answer /ready within 6 s" in proc.stdout
    assert (units(host), licenses(host)) == before
    assert image_of(host, "airlift-sentiment") == old_image
    assert http(host, 5000, "/ready") == 200 and http(host, 5001, "/ready") == 200


def test_good_rotation_replaces_image_and_licenses_then_removes_the_old_image(
        fleet, new_bundle):
    old = {host: (image_id(host, OLD_REF), licenses(host),
                  image_of(host, "airlift-read")) for host in fleet}
    proc = run_playbook("playbooks/rotate.yml", *limit(fleet), "-e", json.dumps(new_bundle))
    assert proc.returncode == 0, proc.stdout[-3000:]
    for host in fleet:
        old_sentiment, old_licenses, old_read = old[host]
        wait_ready(host, 5000)
        wait_ready(host, 5001)
        assert image_of(host, "airlift-sentiment") == image_id(host, NEW_REF)
        assert licenses(host) != old_licenses
        # The replaced image is gone; the read image, still in use, stays.
        assert not has_image(host, old_sentiment)
        assert image_of(host, "airlift-read") == old_read
        state = json.loads(on(host, "cat", "/var/lib/airlift/state/images.json"))["images"]
        assert OLD_REF not in state and NEW_REF in state
    proc = run_playbook("playbooks/rotate.yml", *limit(fleet), "-e", json.dumps(new_bundle),
                        json_output=True)
    stats = json.loads(proc.stdout)["stats"]
    assert all(stats[host]["changed"] == 0 for host in fleet), stats
