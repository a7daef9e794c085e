"""The verify module's decisions: what counts as running as deployed."""

from __future__ import annotations

from airlift_verify import service_problems

UNIT = {"name": "read", "port": 5001, "image_id": "abc123def456",
        "license_sha256": "11"}
GOOD = {"active": "active", "enabled": "enabled", "image": "sha256:abc123def4567890",
        "license_file": "/var/lib/airlift/licenses/read/read.license",
        "license_sha256": "11", "ready": 200, "ready_error": ""}


def test_a_service_as_deployed_has_no_problem():
    assert service_problems(UNIT, GOOD) == []
    # podman reports the ID bare, docker with its algorithm.
    assert service_problems(UNIT, {**GOOD, "image": "abc123def4567890"}) == []


def test_a_stopped_service_is_named_once_with_its_journal():
    problems = service_problems(UNIT, {**GOOD, "active": "inactive", "image": "",
                                       "ready": None, "ready_error": "refused"})
    assert problems == ["airlift-read.service is inactive, not active "
                        "(journalctl -u airlift-read.service; then run playbooks/deploy.yml)"]


def test_each_drift_names_its_fix():
    problems = service_problems(UNIT, {**GOOD, "enabled": "disabled", "image": "sha256:ffff",
                                       "license_sha256": "22", "ready": 503,
                                       "ready_error": "HTTP 503"})
    text = "\n".join(problems)
    assert len(problems) == 4
    assert "not enabled: it would not start at boot" in text
    assert "runs image ffff, not abc123def456 its unit pins" in text
    assert "is not the one its unit was started with (run playbooks/distribute.yml" in text
    assert "does not answer /ready on port 5001 (HTTP 503)" in text


def test_a_missing_license_file_is_a_problem():
    problems = service_problems(UNIT, {**GOOD, "license_file": None, "license_sha256": None})
    assert problems == ["the license file of airlift-read, (none), is not the one its unit was "
                        "started with (run playbooks/distribute.yml, then "
                        "playbooks/deploy.yml)"]
