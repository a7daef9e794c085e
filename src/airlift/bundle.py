"""The bundle that crosses the air gap: a directory, a manifest, an Ed25519 signature.

    bundle/
      manifest.json        versioned: every file (size, sha256), image, license
      manifest.json.sig    Ed25519 signature of manifest.json's bytes (base64)
      images/*.tar         one archive per image, streamed one by one
      licenses/<catalog>/  license files as the container wrote them

Verification fails closed and lists *every* problem: bad or missing signature, size or
hash mismatch, missing file, unlisted extra file, a path that escapes the bundle.
Files are hashed in 1 MiB chunks, so multi-GB archives never sit in memory.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from airlift import __version__

SCHEMA = "airlift.bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
CHUNK = 1 << 20


class BundleError(RuntimeError):
    """The bundle cannot be built or read; the message names the fix."""


PUBLIC_KEY_FIX = ("give the .pub file of the signing key pair (made by `airlift bundle keygen`), "
                  "delivered to the bastion apart from the bundle")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- keys -----------------------------------------------------------------------------


def keygen(out_dir: Path, name: str = "bundle-signing") -> tuple[Path, Path]:
    """Write a new Ed25519 key pair; the private key is 0600 and never overwritten."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise BundleError(f"{out_dir} is a file, not a folder: give a folder for the key pair "
                          "(it is made if missing)") from exc
    except OSError as exc:
        raise BundleError(f"cannot make the folder {out_dir} ({exc.strerror}): give a folder "
                          "you can write for the key pair") from exc
    private, public = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    if private.exists() or public.exists():
        raise BundleError(f"{private} or {public} exists already: keep it, or remove it first")
    key = Ed25519PrivateKey.generate()
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read the signing key {path}: {exc} (make one with "
                          "`airlift bundle keygen --out DIR`)") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 private key (make one with "
                          "`airlift bundle keygen`)")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a PEM public key"
        raise BundleError(f"cannot read the public key {path} ({reason}): {PUBLIC_KEY_FIX}"
                          ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path} is not an Ed25519 public key: {PUBLIC_KEY_FIX}")
    return key


class HashCache:
    """sha256 of files already verified, valid while the file's identity is unchanged.

    The key includes ctime, which no user can set back (utime sets only atime/mtime),
    so any write to a file after it was verified forces a re-hash. A converged re-run
    thus verifies multi-GB archives without reading them.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, str] = {}
        if path is not None:
            try:
                self.entries = json.loads(path.read_text())
            except (OSError, ValueError):
                self.entries = {}

    @staticmethod
    def key(path: Path) -> str:
        info = path.stat()
        return (f"{path.resolve()}:{info.st_dev}:{info.st_ino}:{info.st_size}:"
                f"{info.st_mtime_ns}:{info.st_ctime_ns}")

    def sha256(self, path: Path) -> str:
        key = self.key(path)
        if key not in self.entries:
            self.entries[key] = sha256_file(path)
        return self.entries[key]

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(self.entries))
        os.replace(partial, self.path)


def default_hash_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "airlift" / "verified-hashes.json"


# -- manifest -------------------------------------------------------------------------


def safe_relative(path: str) -> PurePosixPath | None:
    """The path inside the bundle, or None when it is absolute or climbs out."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or not pure.parts or ".." in pure.parts:
        return None
    return pure


def build_manifest(root: Path, images: Iterable[dict[str, Any]],
                   licenses: Iterable[dict[str, Any]],
                   cache: HashCache | None = None) -> dict[str, Any]:
    """Describe every file under root (except the manifest and its signature).

    Image and license entries get their file's size and sha256 copied in, so a host
    needs only its own entries. A HashCache lets a file unchanged since it was last
    hashed (same inode, size, mtime and ctime) skip re-reading.
    """
    cache = cache or HashCache(None)
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        relative = path.relative_to(root).as_posix()
        if relative in (MANIFEST, SIGNATURE) or path.name.endswith(".partial"):
            continue
        if path.is_symlink():
            raise BundleError(f"{relative} is a symbolic link: bundles hold regular files only")
        files.append({"path": relative, "size": path.stat().st_size,
                      "sha256": cache.sha256(path)})
    listed = {entry["path"]: entry for entry in files}
    images = [dict(item) for item in images]
    licenses = [dict(item) for item in licenses]
    for item in [*images, *licenses]:
        key = item.get("archive") or item.get("path")
        if key not in listed:
            raise BundleError(f"{key} is referenced by the manifest but not in {root}")
        item.update(size=listed[key]["size"], sha256=listed[key]["sha256"])
    return {
        "schema": SCHEMA,
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "created_by": f"airlift {__version__}",
        "files": files,
        "images": images,
        "licenses": licenses,
    }


def read_manifest(root: Path) -> dict[str, Any]:
    """The bundle's manifest; a folder without a readable one is not a bundle."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise BundleError(f"no {MANIFEST} in {root}: give the bundle folder that "
                          "`airlift stage` wrote (it holds manifest.json)") from exc
    except OSError as exc:
        raise BundleError(f"cannot read {root / MANIFEST} ({exc.strerror}): give the bundle "
                          "folder that `airlift stage` wrote") from exc
    except ValueError as exc:
        raise BundleError(f"{root / MANIFEST} is not JSON: stage the bundle again") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{root / MANIFEST} is not a JSON object: stage the bundle again")
    return manifest


def write_signed(root: Path, manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    for name, content in ((MANIFEST, data),
                          (SIGNATURE, base64.b64encode(key.sign(data)) + b"\n")):
        partial = root / f"{name}.partial"
        partial.write_bytes(content)
        os.replace(partial, root / name)


def sign(root: Path, key_path: Path) -> dict[str, Any]:
    """(Re)sign an existing manifest after checking its files still match it."""
    manifest = read_manifest(root)
    key = load_private_key(key_path)   # before hashing what may be many GB
    problems = check_files(root, manifest)
    if problems:
        raise BundleError("refusing to sign a bundle whose files do not match its manifest:\n"
                          + "\n".join(f"  - {p}" for p in problems))
    write_signed(root, manifest, key)
    return manifest


# -- verification ---------------------------------------------------------------------


@dataclass
class Verification:
    manifest: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_files(root: Path, manifest: dict[str, Any],
                cache: HashCache | None = None) -> list[str]:
    """Every listed file present, inside the bundle, of the right size and hash; no extras."""
    cache = cache or HashCache(None)
    problems = []
    resolved_root = root.resolve()
    listed = set()
    for entry in manifest.get("files", []):
        relative = safe_relative(str(entry.get("path", "")))
        if relative is None:
            problems.append(f"path escapes the bundle: {entry.get('path')!r}")
            continue
        listed.add(relative.as_posix())
        path = root / relative
        if not path.resolve().is_relative_to(resolved_root):
            problems.append(f"path escapes the bundle through a link: {relative}")
            continue
        if any((root / PurePosixPath(*relative.parts[:depth])).is_symlink()
               for depth in range(1, len(relative.parts) + 1)):
            problems.append(f"symbolic link in the bundle: {relative} (regular files only)")
            continue
        if not path.is_file():
            problems.append(f"missing file: {relative}")
            continue
        size = path.stat().st_size
        if size != entry.get("size"):
            problems.append(f"size mismatch: {relative} is {size} bytes, "
                            f"manifest says {entry.get('size')}")
            continue
        if cache.sha256(path) != entry.get("sha256"):
            problems.append(f"sha256 mismatch: {relative}")
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if relative not in listed and relative not in (MANIFEST, SIGNATURE):
            problems.append(f"unlisted extra file: {relative}")
    for kind, key in (("images", "archive"), ("licenses", "path")):
        for item in manifest.get(kind, []):
            if item.get(key) not in listed:
                problems.append(f"{kind[:-1]} {item.get(key)!r} is not among the listed files")
    return problems


def verify(root: Path, public_key: Path, hash_cache: Path | None = None) -> Verification:
    """Check signature, schema and every file; collect all problems, never stop early.

    With hash_cache, files unchanged since an earlier verification are not re-read.
    """
    problems: list[str] = []
    key = load_public_key(public_key)
    try:
        data = (root / MANIFEST).read_bytes()
    except OSError:
        return Verification(None, [f"missing {MANIFEST} in {root}: is this a bundle?"])
    try:
        signature = base64.b64decode((root / SIGNATURE).read_bytes().strip(), validate=True)
        key.verify(signature, data)
    except FileNotFoundError:
        problems.append(f"missing signature {SIGNATURE}: sign with `airlift bundle sign`")
    except (InvalidSignature, ValueError):
        problems.append("bad signature: manifest.json was changed or signed with another key")
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        return Verification(None, [*problems, f"manifest.json is not JSON: {exc}"])
    if not isinstance(manifest, dict):
        return Verification(None, [*problems, "manifest.json is not a JSON object"])
    if manifest.get("schema") != SCHEMA:
        problems.append(f"unsupported manifest schema {manifest.get('schema')!r} "
                        f"(this airlift reads {SCHEMA})")
    cache = HashCache(hash_cache)
    problems.extend(check_files(root, manifest, cache))
    cache.save()
    return Verification(manifest, problems)
