"""Which part of a bundle a host gets, and which licenses are refused."""

from __future__ import annotations

import pytest
from conftest import flat, run_playbook

from airlift import catalog, distribute

CATALOG = catalog.load()
IMAGE = {"ref": "localhost/airlift-sim/read:1.0", "id": "sha256:aaa", "archive": "images/r.tar",
         "sha256": "h", "size": 10}


def manifest(**license_fields):
    lic = {"catalog": "sim-read", "image_id": "sha256:aaa", "path": "licenses/r/read.license",
           "expires": "2030-01-01T00:00:00+00:00", "sha256": "l", **license_fields}
    return {"images": [IMAGE], "licenses": [lic]}


SERVICES = [{"name": "read", "catalog": "sim-read", "port": 5000},
            {"name": "read2", "catalog": "sim-read", "port": 5001}]


def test_share_has_each_image_once_and_a_license_per_service():
    share = distribute.host_share(manifest(), SERVICES, CATALOG, today="2026-01-01")
    assert share["images"] == [IMAGE]
    assert [lic["service"] for lic in share["licenses"]] == ["read", "read2"]


def test_expired_license_is_refused_with_the_fix():
    with pytest.raises(distribute.ShareError, match="expired on 2030-01-01: renew it"):
        distribute.host_share(manifest(), SERVICES[:1], CATALOG, today="2031-01-01")


def test_license_of_another_image_is_refused():
    with pytest.raises(distribute.ShareError, match="belongs to image sha256:old"):
        distribute.host_share(manifest(image_id="sha256:old"), SERVICES[:1], CATALOG,
                              today="2026-01-01")


def test_missing_image_or_license_names_what_to_stage():
    with pytest.raises(distribute.ShareError, match="no image localhost/airlift-sim/sentiment"):
        distribute.host_share(manifest(), [{"name": "s", "catalog": "sim-sentiment",
                                            "port": 1}], CATALOG)
    with pytest.raises(distribute.ShareError, match="no license for sim-read"):
        distribute.host_share({"images": [IMAGE], "licenses": []}, SERVICES[:1], CATALOG)


def test_date_only_license_expiry_does_not_crash():
    share = distribute.host_share(manifest(expires="2030-01-01"), SERVICES[:1], CATALOG,
                                  today="2029-12-31")
    assert share["licenses"][0]["service"] == "read"


PROXY = {"ref": "localhost/airlift-proxy:latest", "id": "sha256:ppp", "archive": "images/p.tar",
         "sha256": "p", "size": 5}


def test_front_door_host_gets_the_proxy_image_without_a_license():
    bundle = {**manifest(), "images": [IMAGE, PROXY]}
    share = distribute.host_share(bundle, SERVICES, CATALOG, today="2026-01-01", frontdoor=True)
    assert share["images"] == [IMAGE, PROXY]
    assert [lic["service"] for lic in share["licenses"]] == ["read", "read2"]
    without = distribute.host_share(bundle, SERVICES, CATALOG, today="2026-01-01")
    assert without["images"] == [IMAGE]


def test_front_door_without_the_proxy_in_the_bundle_says_stage_again():
    with pytest.raises(distribute.ShareError, match=r"no image localhost/airlift-proxy:latest"):
        distribute.host_share(manifest(), SERVICES, CATALOG, today="2026-01-01", frontdoor=True)


def test_stage_plan_carries_the_proxy_for_front_door_hosts_only():
    from airlift import stage

    builtin = catalog.load()
    hostvars = {"a": {"airlift_services": SERVICES[:1], "airlift_frontdoor_enabled": True},
                "b": {"airlift_services": SERVICES[:1]}}
    plan = {entry["catalog"]: entry for entry in stage.plan(["a", "b"], hostvars, builtin)}
    assert plan["airlift-frontdoor"]["hosts"] == ["a"]
    assert plan["airlift-frontdoor"]["license"] is False
    assert plan["sim-read"]["license"] is True and plan["sim-read"]["hosts"] == ["a", "b"]


# -- the airlift_image action plugin: preflight's disk rule before any byte moves ------

MIB = 1024 * 1024
BUNDLED = {**IMAGE, "sha256": "a" * 64, "size": 200 * MIB}


def image_action(monkeypatch, free_mb, loaded=None, **args):
    """The action plugin with a fake connection; the module answers the query, and
    state=loaded with `loaded` (default: it loaded the image)."""
    from importlib import util
    from unittest import mock

    from conftest import ROOT

    spec = util.spec_from_file_location("airlift_image_action",
                                        ROOT / "plugins/action/airlift_image.py")
    code = util.module_from_spec(spec)
    spec.loader.exec_module(code)
    task = mock.Mock(async_val=0, check_mode=False, args={
        "bundle_dir": "/bundle", "images": [BUNDLED], "staging_dir": "/var/lib/airlift/staging",
        **args})
    connection = mock.Mock()
    connection._shell.tmpdir = "/tmp/ansible-tmp"
    action = code.ActionModule(task, connection, mock.Mock(become=False), None, None)
    calls = []

    def execute_module(name, module_args, task_vars):
        calls.append(module_args)
        if module_args["state"] == "query":
            return {"changed": False, "present": [], "discarded": [], "unrecorded": [],
                    "missing": [{"id": BUNDLED["id"], "ref": BUNDLED["ref"]}],
                    "free_mb": free_mb}
        return loaded or {"changed": True, "loaded": True}

    monkeypatch.setattr(action, "_execute_module", execute_module)
    monkeypatch.setattr(action, "_get_remote_user", lambda: "root")
    monkeypatch.setattr(action, "_remove_tmp_path", lambda path: None)
    return action, connection, calls


def test_transfer_preflight_would_flag_is_refused_before_any_byte_moves(monkeypatch):
    free = {"/var/lib/airlift/staging": 50_000, "/var/lib/containers": 500}
    action, connection, calls = image_action(
        monkeypatch, free, disk_paths=["/var/lib/containers"], disk_headroom=1.5)
    result = action.run(task_vars={})
    assert result["failed"] is True
    assert result["msg"].startswith("not enough disk on the host: 1 image(s) need 600 MiB")
    assert "/var/lib/containers has 500 MiB free" in result["msg"]
    assert calls[0]["disk_paths"] == ["/var/lib/containers"]   # the image store is asked
    assert len(calls) == 1 and not connection.put_file.called


def test_transfer_within_the_rule_goes_ahead(monkeypatch):
    free = {"/var/lib/airlift/staging": 600, "/var/lib/containers": 600}
    action, connection, calls = image_action(
        monkeypatch, free, disk_paths=["/var/lib/containers"], disk_headroom=1.5)
    result = action.run(task_vars={})
    assert not result.get("failed"), result
    assert result["loaded"] == [BUNDLED["ref"]]
    # The headroom is the controller's: the module is never given an option it lacks.
    assert [call["state"] for call in calls] == ["query", "loaded"]
    assert not any("disk_headroom" in call for call in calls)
    # This run's own temporary name, which the module is told to load and to lock as.
    ((source, temporary), _), = connection.put_file.call_args_list
    assert source == "/bundle/images/r.tar"
    assert temporary == f"/var/lib/airlift/staging/.{'a' * 64}.tar.{calls[1]['run_id']}.partial"
    assert calls[1]["src"] == temporary and calls[0]["run_id"] == calls[1]["run_id"]


def test_two_runs_never_share_a_temporary_name(monkeypatch):
    import airlift_images

    free = {"/var/lib/airlift/staging": 600}
    names = []
    for _ in range(2):
        action, connection, calls = image_action(monkeypatch, free, disk_headroom=1.0)
        action.run(task_vars={})
        names.append(connection.put_file.call_args[0][1].rsplit("/", 1)[1])
        # The name the controller makes is the one the module makes and recognises.
        assert names[-1] == airlift_images.partial_name("a" * 64, calls[1]["run_id"])
        assert airlift_images.PARTIAL_NAME.match(names[-1])
    assert names[0] != names[1]


def test_a_run_that_another_run_beat_to_the_load_reports_no_change(monkeypatch):
    free = {"/var/lib/airlift/staging": 600}
    action, _, _ = image_action(monkeypatch, free, disk_headroom=1.0, loaded={
        "changed": False, "loaded": False, "msg": "image already present"})
    result = action.run(task_vars={})
    assert result["changed"] is False and result["loaded"] == []
    assert result["transferred_bytes"] == BUNDLED["size"]      # it did move its copy


def test_a_module_that_died_of_an_exception_is_reported_with_its_reason(monkeypatch):
    from types import SimpleNamespace

    # ansible-core 2.19's answer for an uncaught exception: no msg, an exception object.
    died = {"failed": True, "exception": SimpleNamespace(event=SimpleNamespace(
        msg="[Errno 2] No such file or directory: '/var/lib/airlift/staging/x.tar'"))}
    action, _, _ = image_action(monkeypatch, {"/var/lib/airlift/staging": 600},
                                disk_headroom=1.0, loaded=died)
    result = action.run(task_vars={})
    assert result["failed"] is True
    assert result["msg"] == (f"{BUNDLED['ref']}: [Errno 2] No such file or directory: "
                             "'/var/lib/airlift/staging/x.tar'")


def test_transfer_headroom_defaults_to_preflights(monkeypatch):
    free = {"/var/lib/airlift/staging": 599}    # 2 x 200 MiB fits; x1.5 does not
    action, connection, _ = image_action(monkeypatch, free)
    assert action.run(task_vars={})["failed"] is True
    assert not connection.put_file.called


@pytest.mark.parametrize(("extra", "named"), [
    ("airlift_distribute_public_key=",
     "set airlift_distribute_public_key to the Ed25519 public key (PEM file) delivered "
     "to the bastion with the bundle"),
    ("airlift_distribute_public_key=.",
     "set airlift_distribute_public_key to the Ed25519 public key (PEM file) delivered "
     "to the bastion with the bundle: . is not a file"),
    ("airlift_distribute_public_key=README.md airlift_distribute_staging_dir= "
     "airlift_distribute_bundle_dir=",
     "set airlift_distribute_bundle_dir to the bundle folder carried across the gap; "
     "set airlift_distribute_staging_dir to the host folder archives wait in")])
def test_unset_public_key_is_refused_naming_the_variable_before_any_host(extra, named):
    """The role's default key is empty; a folder is no key; an empty host folder would
    put archives under /. The host is not a container at all, so contacting it would show
    as UNREACHABLE."""
    proc = run_playbook("playbooks/distribute.yml", "-e",
                        "ansible_connection=containers.podman.podman", "-e", extra,
                        inventory="airlift-ghost-1,")
    assert proc.returncode != 0
    assert named in flat(proc.stdout)
    assert "Is a directory" not in proc.stdout
    assert "UNREACHABLE" not in proc.stdout
