"""Which part of a bundle a host gets, and which licenses are refused."""

from __future__ import annotations

import pytest

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
