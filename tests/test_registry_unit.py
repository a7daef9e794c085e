"""Image references on the connected side: registry, tag and digest, mirror rewrites,
and whether a tag moved since the previous bundle."""

from __future__ import annotations

import pytest

from airlift import registry, runner

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@pytest.mark.parametrize(("ref", "expected"), [
    ("mcr.microsoft.com/azure-cognitive-services/textanalytics/sentiment:latest",
     ("mcr.microsoft.com", "azure-cognitive-services/textanalytics/sentiment", "latest", None)),
    (f"127.0.0.1:5000/airlift-sim/sentiment:1.0@{DIGEST}",
     ("127.0.0.1:5000", "airlift-sim/sentiment", "1.0", DIGEST)),
    (f"registry.internal:5000/x/y@{DIGEST}", ("registry.internal:5000", "x/y", None, DIGEST)),
    ("localhost/airlift-sim/read:1.0", ("localhost", "airlift-sim/read", "1.0", None)),
    ("library/debian", ("docker.io", "library/debian", None, None)),
])
def test_parse_splits_registry_path_tag_and_digest(ref, expected):
    parsed = registry.parse(ref)
    assert (parsed.registry, parsed.path, parsed.tag, parsed.digest) == expected


def test_a_pinned_tag_is_pulled_by_tag_so_a_moved_tag_is_caught():
    parsed = registry.parse(f"reg.example/a:1.0@{DIGEST}")
    assert parsed.pull_ref == "reg.example/a:1.0"
    assert parsed.tagged == "reg.example/a:1.0"
    assert registry.parse(f"reg.example/a@{DIGEST}").pull_ref == f"reg.example/a@{DIGEST}"


def test_a_malformed_digest_is_refused_in_one_sentence():
    with pytest.raises(registry.RegistryError, match="must be sha256: and 64 hex digits"):
        registry.parse("reg.example/a:1.0@sha256:abc")


def test_rewrite_prefers_the_entry_mirror_then_the_longest_global_prefix():
    ref = "mcr.microsoft.com/azure-cognitive-services/vision/read:3.2"
    mirrors = {"mcr.microsoft.com": "registry.internal:5000",
               "mcr.microsoft.com/azure-cognitive-services/vision": "vision.internal/mcr"}
    assert registry.rewrite(ref, mirrors) == "vision.internal/mcr/read:3.2"
    assert registry.rewrite(ref.replace("vision/read", "textanalytics/ner"), mirrors) == (
        "registry.internal:5000/azure-cognitive-services/textanalytics/ner:3.2")
    assert registry.rewrite(ref, mirrors, "entry.internal") == (
        "entry.internal/azure-cognitive-services/vision/read:3.2")
    # A prefix matches whole path segments only.
    assert registry.rewrite("mcr.microsoft.com.evil/x:1", mirrors) == "mcr.microsoft.com.evil/x:1"
    assert registry.rewrite("other.example/x:1", mirrors) == "other.example/x:1"


def test_moved_compares_with_every_digest_the_previous_bundle_knew():
    previous = {"images": [{"ref": "reg.example/a:1.0", "digest": DIGEST,
                            "repo_digests": [f"mirror.example/a@{OTHER}"]}]}
    assert registry.moved("reg.example/a:1.0", DIGEST, previous) is None
    assert registry.moved("reg.example/a:1.0", OTHER, previous) is None
    third = "sha256:" + "c" * 64
    assert registry.moved("reg.example/a:1.0", third, previous) == DIGEST
    assert registry.moved("reg.example/b:1.0", third, previous) is None
    assert registry.moved("reg.example/a:1.0", third, None) is None


def test_the_registry_password_variable_is_redacted_from_shown_commands():
    shown = runner.redact_extra_vars(
        '{"airlift_stage_registry_credentials": {"reg.example": '
        '{"username": "u", "password": "pw-never-shown"}}}')
    assert "pw-never-shown" not in shown
