"""Bundle manifest, Ed25519 signature, and every way a bundle can be tampered with."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from airlift import bundle


@pytest.fixture
def keys(tmp_path):
    return bundle.keygen(tmp_path / "keys")


@pytest.fixture
def signed(tmp_path, keys):
    root = tmp_path / "bundle"
    (root / "images").mkdir(parents=True)
    (root / "licenses" / "sim-read").mkdir(parents=True)
    (root / "images" / "read.tar").write_bytes(os.urandom(3 * bundle.CHUNK + 17))
    (root / "licenses" / "sim-read" / "read.license").write_text("{}\n")
    manifest = bundle.build_manifest(
        root,
        images=[{"ref": "localhost/airlift-sim/read:1.0", "id": "sha256:abc",
                 "archive": "images/read.tar"}],
        licenses=[{"catalog": "sim-read", "path": "licenses/sim-read/read.license",
                   "expires": "2030-01-01T00:00:00+00:00"}])
    bundle.write_signed(root, manifest, bundle.load_private_key(keys[0]))
    return root


def rewrite_manifest(root, keys, change):
    manifest = json.loads((root / bundle.MANIFEST).read_text())
    change(manifest)
    bundle.write_signed(root, manifest, bundle.load_private_key(keys[0]))


def test_intact_bundle_verifies(signed, keys):
    result = bundle.verify(signed, keys[1])
    assert result.ok, result.problems
    assert result.manifest["schema"] == "airlift.bundle/1"
    sizes = {f["path"]: f["size"] for f in result.manifest["files"]}
    assert sizes["images/read.tar"] == 3 * bundle.CHUNK + 17


def test_private_key_is_owner_only_and_never_overwritten(keys, tmp_path):
    assert (keys[0].stat().st_mode & 0o777) == 0o600
    with pytest.raises(bundle.BundleError, match="exists already"):
        bundle.keygen(tmp_path / "keys")


def test_every_tamper_is_listed_at_once(signed, keys):
    archive = signed / "images" / "read.tar"
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF
    archive.write_bytes(bytes(data))                                  # same size, new hash
    (signed / "licenses" / "sim-read" / "read.license").unlink()       # missing
    (signed / "images" / "extra.tar").write_bytes(b"x")               # unlisted
    problems = bundle.verify(signed, keys[1]).problems
    assert "sha256 mismatch: images/read.tar" in problems
    assert "missing file: licenses/sim-read/read.license" in problems
    assert "unlisted extra file: images/extra.tar" in problems
    assert len(problems) == 3


def test_truncated_file_is_a_size_mismatch(signed, keys):
    archive = signed / "images" / "read.tar"
    with archive.open("r+b") as handle:
        handle.truncate(1000)
    problems = bundle.verify(signed, keys[1]).problems
    assert problems == [f"size mismatch: images/read.tar is 1000 bytes, manifest says "
                        f"{3 * bundle.CHUNK + 17}"]


def test_edited_manifest_or_other_key_is_a_bad_signature(signed, keys, tmp_path):
    text = (signed / bundle.MANIFEST).read_text().replace("2030-01-01", "2099-01-01")
    (signed / bundle.MANIFEST).write_text(text)
    assert any("bad signature" in p for p in bundle.verify(signed, keys[1]).problems)
    other = bundle.keygen(tmp_path / "other")
    rewrite_manifest(signed, (other[0], other[1]), lambda m: None)
    assert any("bad signature" in p for p in bundle.verify(signed, keys[1]).problems)


def test_missing_signature_is_refused(signed, keys):
    (signed / bundle.SIGNATURE).unlink()
    assert any("missing signature" in p for p in bundle.verify(signed, keys[1]).problems)


def test_signed_paths_that_escape_are_refused(signed, keys, tmp_path):
    (tmp_path / "outside").write_text("secret")
    rewrite_manifest(signed, keys, lambda m: m["files"].extend([
        {"path": "../outside", "size": 6, "sha256": "0"},
        {"path": "/etc/passwd", "size": 1, "sha256": "0"}]))
    problems = bundle.verify(signed, keys[1]).problems
    assert "path escapes the bundle: '../outside'" in problems
    assert "path escapes the bundle: '/etc/passwd'" in problems


def test_symlink_out_of_the_bundle_is_refused(signed, keys, tmp_path):
    (tmp_path / "outside").write_text("secret")
    (signed / "images" / "link.tar").symlink_to(tmp_path / "outside")
    rewrite_manifest(signed, keys, lambda m: m["files"].append(
        {"path": "images/link.tar", "size": 6, "sha256": bundle.sha256_file(tmp_path /
                                                                              "outside")}))
    problems = bundle.verify(signed, keys[1]).problems
    assert "path escapes the bundle through a link: images/link.tar" in problems


def test_manifest_must_reference_listed_files(tmp_path):
    (tmp_path / "a").write_text("a")
    with pytest.raises(bundle.BundleError, match="not in"):
        bundle.build_manifest(tmp_path, [{"archive": "images/none.tar"}], [])


def test_sign_refuses_a_bundle_that_no_longer_matches(signed, keys):
    (signed / "images" / "read.tar").write_bytes(b"changed")
    with pytest.raises(bundle.BundleError, match="size mismatch"):
        bundle.sign(signed, keys[0])


def cli(*args):
    return subprocess.run([sys.executable, "-m", "airlift.cli", "bundle", *args],
                          capture_output=True, text=True, check=False)


def test_cli_keygen_sign_verify(tmp_path, signed, keys):
    out = tmp_path / "k2"
    assert cli("keygen", "--out", str(out)).returncode == 0
    assert cli("sign", str(signed), "--key", str(out / "bundle-signing.key")).returncode == 0
    ok = cli("verify", str(signed), "--public-key", str(out / "bundle-signing.pub"))
    assert ok.returncode == 0, ok.stderr
    assert "intact" in ok.stdout
    (signed / "images" / "read.tar").write_bytes(b"x")
    (signed / "stray").write_text("x")
    bad = cli("verify", str(signed), "--public-key", str(out / "bundle-signing.pub"))
    assert bad.returncode == 1
    assert "size mismatch: images/read.tar" in bad.stdout
    assert "unlisted extra file: stray" in bad.stdout


def test_top_level_verify_is_bundle_verify(signed, keys, tmp_path):
    """`airlift verify` is the bastion's first step: the same command, the same exit codes."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}   # its hash cache

    def verify(*args):
        return subprocess.run([sys.executable, "-m", "airlift.cli", *args, str(signed),
                               "--public-key", str(keys[1])], capture_output=True, text=True,
                              env=env, check=False)

    top, nested = verify("verify"), verify("bundle", "verify")
    assert (top.returncode, nested.returncode) == (0, 0), top.stderr
    assert top.stdout == nested.stdout and f"bundle {signed} is intact" in top.stdout
    (signed / "licenses" / "sim-read" / "read.license").write_text('{"expires": "2099"}\n')
    top, nested = verify("verify"), verify("bundle", "verify")
    assert (top.returncode, nested.returncode) == (1, 1)
    assert top.stdout == nested.stdout
    assert "NOT intact" in top.stdout and "licenses/sim-read/read.license" in top.stdout


def test_hash_cache_skips_unchanged_files_but_catches_any_rewrite(signed, keys, tmp_path,
                                                                  monkeypatch):
    cache = tmp_path / "cache.json"
    assert bundle.verify(signed, keys[1], cache).ok
    reads = []
    real = bundle.sha256_file
    monkeypatch.setattr(bundle, "sha256_file", lambda path: reads.append(path) or real(path))
    assert bundle.verify(signed, keys[1], cache).ok
    assert reads == []                      # nothing re-read on a converged re-run
    archive = signed / "images" / "read.tar"
    stat = archive.stat()
    data = bytearray(archive.read_bytes())
    data[7] ^= 0xFF
    archive.write_bytes(bytes(data))
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime forged back
    assert "sha256 mismatch: images/read.tar" in bundle.verify(signed, keys[1], cache).problems


def test_symlink_inside_the_bundle_is_refused(signed, keys):
    (signed / "images" / "alias.tar").symlink_to(signed / "images" / "read.tar")
    rewrite_manifest(signed, keys, lambda m: m["files"].append(
        {"path": "images/alias.tar", "size": 3 * bundle.CHUNK + 17,
         "sha256": bundle.sha256_file(signed / "images" / "read.tar")}))
    problems = bundle.verify(signed, keys[1]).problems
    assert "symbolic link in the bundle: images/alias.tar (regular files only)" in problems


def test_manifest_that_is_not_an_object_is_a_problem_not_a_crash(signed, keys):
    (signed / bundle.MANIFEST).write_text("[1, 2]")
    problems = bundle.verify(signed, keys[1]).problems
    assert "manifest.json is not a JSON object" in problems


def test_seal_repairs_a_signature_left_stale_by_an_interrupted_seal(signed, keys, tmp_path,
                                                                    monkeypatch):
    from airlift import stage

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    manifest = json.loads((signed / bundle.MANIFEST).read_text())
    changed, _ = stage.seal(signed, manifest["images"], manifest["licenses"], keys[0])
    (signed / bundle.SIGNATURE).write_text("AAAA\n")   # killed between the two writes
    changed, _ = stage.seal(signed, manifest["images"], manifest["licenses"], keys[0])
    assert changed
    assert bundle.verify(signed, keys[1]).ok
    changed, _ = stage.seal(signed, manifest["images"], manifest["licenses"], keys[0])
    assert not changed


# -- staging records each license's image and expiry ---------------------------------

SIM_LICENSE = {"format": "airlift-sim-license/1", "service": "read", "imageVersion": "1.0",
               "issued": "2026-01-01T00:00:00+00:00",
               "expires": "2027-01-01T00:00:00+00:00", "signature": "c2ln"}


def test_license_expiry_is_read_from_the_license_file(tmp_path):
    from airlift import stage

    path = tmp_path / "read.license"
    path.write_text(json.dumps(SIM_LICENSE, indent=2) + "\n")
    assert stage.license_expiry(path, "2030-01-01") == "2027-01-01T00:00:00+00:00"


@pytest.mark.parametrize("content", [
    "opaque license bytes\n",                     # not JSON (a vendor's own format)
    json.dumps({**SIM_LICENSE, "expires": None}),  # JSON that does not say
    json.dumps({"format": "x"}),
    json.dumps(["not", "an", "object"]),
    None,                                          # unreadable: no file
])
def test_license_expiry_falls_back_to_the_inventory_value(tmp_path, content):
    from airlift import stage

    path = tmp_path / "read.license"
    if content is not None:
        path.write_text(content)
    assert stage.license_expiry(path, "2030-01-01") == "2030-01-01"
    assert stage.license_expiry(path, None) is None


def stage_filters():
    from importlib import util

    from conftest import ROOT

    spec = util.spec_from_file_location("airlift_bundle_filters",
                                        ROOT / "plugins/filter/airlift_bundle.py")
    code = util.module_from_spec(spec)
    spec.loader.exec_module(code)
    return code.FilterModule().filters()


def test_stage_licenses_records_each_licenses_image_id_and_expiry(tmp_path):
    root = tmp_path / "bundle"
    read_dir, sent_dir = root / "licenses" / "sim-read-aaa", root / "licenses" / "sim-sent-bbb"
    read_dir.mkdir(parents=True)
    sent_dir.mkdir(parents=True)
    (read_dir / "read.license").write_text(json.dumps(SIM_LICENSE))
    (sent_dir / "sentiment.license").write_text("opaque license bytes\n")
    images = [{"catalog": "sim-read", "ref": "localhost/airlift-sim/read:1.0",
               "id": "sha256:aaa"},
              {"catalog": "sim-sentiment", "ref": "localhost/airlift-sim/sentiment:1.0",
               "id": "sha256:bbb"}]
    # `find` results, one per licensed image, as the stage role registers them.
    found = [{"item": {"image": images[0]}, "files": [{"path": str(read_dir / "read.license")}]},
             {"item": {"image": images[1]},
              "files": [{"path": str(sent_dir / "sentiment.license")}]}]
    stage_licenses = stage_filters()["airlift_stage_licenses"]
    assert stage_licenses(found, images, str(root), "2030-06-30") == [
        {"catalog": "sim-read", "image": "localhost/airlift-sim/read:1.0",
         "image_id": "sha256:aaa", "path": "licenses/sim-read-aaa/read.license",
         "expires": "2027-01-01T00:00:00+00:00"},          # the file's own expiry wins
        {"catalog": "sim-sentiment", "image": "localhost/airlift-sim/sentiment:1.0",
         "image_id": "sha256:bbb", "path": "licenses/sim-sent-bbb/sentiment.license",
         "expires": "2030-06-30"}]                          # else the inventory's
    # airlift_stage_license_expires left empty: the expiry is unknown, not "".
    assert stage_licenses(found, images, str(root), "")[1]["expires"] is None
