"""Staging from a private registry: login, wrong password, mirror rewrite, digest pin, a
moved tag, and no secret (registry password or API key) left anywhere after the run.

One module-scoped registry (Debian's docker-registry, htpasswd bcrypt auth) listens on
127.0.0.1 only, with a temporary config and storage, and is stopped at the end.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, flat

from airlift import lab

pytestmark = pytest.mark.lab
USER = "airlift-stage"
SIM = "localhost/airlift-sim/{}:1.0"
ENGINE_DIRS = [Path("/var/lib/containers/storage"), Path("/run/containers"), Path("/run/libpod")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def podman(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], input=stdin, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.password = f"reg-pw-{os.urandom(8).hex()}"
        self.authfile = root / "push-auth.json"
        self.names: list[str] = []

    def push(self, local: str, path: str) -> str:
        """Push a local image as host/path; returns the digest the registry serves."""
        target = f"{self.host}/{path}"
        digest_file = self.root / "digest"
        podman("push", "--quiet", "--tls-verify=false", "--authfile", str(self.authfile),
               "--digestfile", str(digest_file), local, target)
        return digest_file.read_text().strip()

    def untag_all(self) -> None:
        """Remove only the names this module's runs gave to the shared images."""
        listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        for name in listed:
            if name.startswith((self.host, "mcr.example.invalid")):
                subprocess.run(["podman", "untag", name, name], capture_output=True,
                               check=False)


def reap_stale_registries() -> None:
    """A killed test run skips its teardown: stop its registry, drop its image names and
    its folder, so that nothing of it outlives the next run."""
    for root in Path(tempfile.gettempdir()).glob("airlift-registry-test-*"):
        try:
            pid, host = (root / "server").read_text().split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            cmdline, host = b"", ""
        if str(root / "config.yml").encode() in cmdline:
            os.kill(int(pid), 15)
        if host:
            stale = Registry(root)
            stale.host = host
            stale.untag_all()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def registry():
    if not shutil.which("docker-registry") or not shutil.which("htpasswd"):
        pytest.fail("docker-registry and apache2-utils are missing: run lab/bootstrap.sh")
    reap_stale_registries()
    lab.ensure_simulator_images(services=["sentiment", "read"])
    root = Path(tempfile.mkdtemp(prefix="airlift-registry-test-"))
    reg = Registry(root)
    subprocess.run(["htpasswd", "-iBc", str(root / "htpasswd"), USER], input=reg.password,
                   text=True, capture_output=True, check=True)
    (root / "config.yml").write_text(json.dumps({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "storage")},
                    "delete": {"enabled": True}},
        "http": {"addr": reg.host},
        "auth": {"htpasswd": {"realm": "airlift-lab", "path": str(root / "htpasswd")}}}))
    server = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")],
                              stdout=subprocess.DEVNULL, stderr=(root / "log").open("w"))
    (root / "server").write_text(f"{server.pid} {reg.host}\n")
    try:
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", reg.port)) == 0:
                    break
            time.sleep(0.1)
        podman("login", "--tls-verify=false", "--authfile", str(reg.authfile), "--username",
               USER, "--password-stdin", reg.host, stdin=reg.password)
        reg.sentiment = reg.push(SIM.format("sentiment"), "airlift-sim/sentiment:1.0")
        yield reg
    finally:
        server.terminate()
        server.wait(timeout=30)
        reg.untag_all()
        shutil.rmtree(root, ignore_errors=True)


def inventory(tmp_path: Path, image: str, **stage_vars) -> Path:
    """A one-host inventory whose sentiment service uses `image`."""
    path = tmp_path / "inventory.yml"
    path.write_text(json.dumps({"all": {
        "hosts": {"stagehost": {
            "airlift_services": [{"name": "sentiment", "catalog": "sim-sentiment",
                                  "port": 5000}],
            "airlift_catalog_overrides": {"sim-sentiment": {"image": image}}}},
        "vars": {"airlift_eula": "accept", "airlift_stage_network": "none",
                 "airlift_stage_billing_endpoint": "https://lab.cognitiveservices.azure.com",
                 "airlift_stage_signing_key": str(lab.ensure_signing_key()),
                 "airlift_stage_bundle_dir": str(tmp_path / "bundle"), **stage_vars}}}))
    return path


def credentials(reg: Registry) -> dict:
    """Credentials as an operator writes them: the password from the environment."""
    return {"airlift_stage_insecure_registries": [reg.host],
            "airlift_stage_registry_credentials": {reg.host: {
                "username": USER,
                "password": "{{ lookup('ansible.builtin.env', 'LAB_REGISTRY_PASSWORD') }}"}}}


def stage(inv: Path, password: str, api_key: str = "unused-api-key",
          *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_REGISTRY_PASSWORD": password, "AIRLIFT_API_KEY": api_key}
    return subprocess.run([sys.executable, "-m", "airlift.cli", "stage", "-i", str(inv), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)


def manifest_image(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "bundle" / "manifest.json").read_text())["images"][0]


def forms(secret: str) -> list[bytes]:
    """The secret as bytes and as base64 at each of the three alignments (podman's secret
    and auth files hold base64)."""
    found = [secret.encode()]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret.encode())
        found.append(encoded[4 if shift else 0:-4])
    return found


def holds(path: Path, needles: list[bytes]) -> bool:
    """Whether a regular file holds any needle, read in chunks that overlap."""
    keep = max(len(needle) for needle in needles)
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            window = tail + chunk
            if any(needle in window for needle in needles):
                return True
            tail = window[-keep:]
    return False


def files_holding(secrets: list[str], roots: list[Path], since: float | None = None) -> list[str]:
    """Regular files under roots holding a secret; `merged` overlay mounts are views of
    the layers already read (and of running containers' devices), so they are skipped."""
    needles = [form for secret in secrets for form in forms(secret)]
    hits = []
    for root in roots:
        for base, dirs, names in os.walk(root):
            dirs[:] = [name for name in dirs if name != "merged"]
            for name in names:
                path = Path(base, name)
                try:
                    info = path.lstat()
                    if not stat.S_ISREG(info.st_mode) or (since is not None and (
                            info.st_mtime < since or info.st_size > 64 << 20)):
                        continue
                    if holds(path, needles):
                        hits.append(str(path))
                except OSError:
                    continue
    return hits


def test_login_pulls_and_leaves_no_password_or_api_key(registry, tmp_path):
    api_key = f"api-key-{os.urandom(8).hex()}"
    ref = f"{registry.host}/airlift-sim/sentiment:1.0"
    started = time.time() - 1
    proc = stage(inventory(tmp_path, ref, **credentials(registry)), registry.password, api_key)
    assert proc.returncode == 0, proc.stdout[-3000:]
    image = manifest_image(tmp_path)
    assert image["ref"] == ref and image["tag"] == "1.0"
    assert image["digest"] == registry.sentiment
    assert image["id"] == "sha256:" + podman("image", "inspect", "--format", "{{.Id}}",
                                             SIM.format("sentiment")).stdout.strip()
    assert list((tmp_path / "bundle" / "licenses").rglob("*.license")), "no license downloaded"
    # The engine's whole storage, state database and secrets, everything written since
    # the run started under /tmp and the home folder, the bundle and the run's artifacts.
    artifacts = proc.stdout.split("artifacts: ", 1)[1].split()[0] if "artifacts: " in \
        proc.stdout else str(ROOT / "reports")
    hits = files_holding([registry.password, api_key],
                         [*ENGINE_DIRS, tmp_path, Path(artifacts).parent])
    hits += files_holding([registry.password, api_key],
                          [Path(tempfile.gettempdir()), Path.home()], since=started)
    hits = [hit for hit in hits if not hit.startswith(str(registry.root))]
    assert hits == []
    assert registry.password not in proc.stdout + proc.stderr
    assert api_key not in proc.stdout + proc.stderr
    assert not list(Path(tempfile.gettempdir()).glob("airlift-registry-auth-*"))
    assert "airlift-stage-" not in podman("secret", "ls").stdout


def test_wrong_password_fails_in_one_sentence_naming_the_variable(registry, tmp_path):
    wrong = f"wrong-{os.urandom(6).hex()}"
    ref = f"{registry.host}/airlift-sim/sentiment:1.0"
    proc = stage(inventory(tmp_path, ref, **credentials(registry)), wrong)
    assert proc.returncode != 0
    assert (f"login to {registry.host} refused the username or password: check "
            f"airlift_stage_registry_credentials['{registry.host}']") in flat(proc.stdout)
    assert wrong not in proc.stdout + proc.stderr
    assert not (tmp_path / "bundle" / "manifest.json").exists()
    assert not list(Path(tempfile.gettempdir()).glob("airlift-registry-auth-*"))


def test_mirror_rewrite_pulls_from_the_mirror_and_records_the_original(registry, tmp_path):
    ref = "mcr.example.invalid/airlift-sim/sentiment:1.0"
    inv = inventory(tmp_path, ref, airlift_stage_registry_mirrors={
        "mcr.example.invalid": registry.host}, **credentials(registry))
    proc = stage(inv, registry.password)
    assert proc.returncode == 0, proc.stdout[-3000:]
    image = manifest_image(tmp_path)
    assert image["ref"] == ref
    assert image["pulled_from"] == f"{registry.host}/airlift-sim/sentiment:1.0"
    assert image["digest"] == registry.sentiment
    # The bundle carries the catalog's name, so hosts find the image they expect.
    archive = subprocess.run(["tar", "-xOf", str(tmp_path / "bundle" / image["archive"]),
                              "manifest.json"], capture_output=True, text=True, check=True)
    assert json.loads(archive.stdout)[0]["RepoTags"] == [ref]


def test_digest_pin_refuses_a_moved_tag_and_check_reports_it(registry, tmp_path):
    moving = f"{registry.host}/airlift-sim/moving:1.0"
    first = registry.push(SIM.format("sentiment"), "airlift-sim/moving:1.0")
    inv = inventory(tmp_path, f"{moving}@{first}", **credentials(registry))
    assert stage(inv, registry.password).returncode == 0
    assert manifest_image(tmp_path)["pinned"] == first
    # Someone pushes another image under the same tag.
    second = registry.push(SIM.format("read"), "airlift-sim/moving:1.0")
    assert second != first
    check = stage(inv, registry.password, "unused-api-key", "--check")
    assert check.returncode == 0, check.stdout[-3000:]
    out = flat(check.stdout)
    assert (f"{moving}@{first}: would pull {moving} ({second}), which differs from the pin: "
            "the stage would refuse it") in out
    assert f"tag moved since the last bundle: {moving}@{first} was {first}, now {second}" in out
    refused = stage(inv, registry.password)
    assert refused.returncode != 0
    assert (f"{moving} is now {second[:19]}, not the pinned {first[:19]}: review the new "
            "image, then update the pin") in flat(refused.stdout)
    assert manifest_image(tmp_path)["digest"] == first  # the bundle was left as it was
    # Someone reviewed the new image and moved the pin: it is staged.
    repinned = stage(inventory(tmp_path, f"{moving}@{second}", **credentials(registry)),
                     registry.password)
    assert repinned.returncode == 0, repinned.stdout[-3000:]
    image = manifest_image(tmp_path)
    assert (image["digest"], image["pinned"], image["tag"]) == (second, second, "1.0")
    assert image["id"] == "sha256:" + podman("image", "inspect", "--format", "{{.Id}}",
                                             SIM.format("read")).stdout.strip()
    # Unpinned, a moved tag is staged, and the stage says so.
    unpinned = tmp_path / "unpinned"
    unpinned.mkdir()
    inv = inventory(unpinned, moving, **credentials(registry))
    assert stage(inv, registry.password).returncode == 0
    assert registry.push(SIM.format("sentiment"), "airlift-sim/moving:1.0") == first
    again = stage(inv, registry.password)
    assert again.returncode == 0, again.stdout[-3000:]
    assert (f"tag moved since the last bundle: {moving} was {second}, now {first}"
            in flat(again.stdout))
    assert manifest_image(unpinned)["digest"] == first
