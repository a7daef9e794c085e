"""Connected side: pull images from registries that need a login, through mirrors, by digest.

The password reaches podman on standard input only (`podman login --password-stdin`)
and is kept in a temporary auth file inside a 0700 directory that exists only while
the images are pulled; the directory is removed in a `finally`, so a failed pull or
a refused login leaves no credential on disk. Image references may pin a digest
(`name:tag@sha256:...` or `name@sha256:...`): a pull whose image has another digest
is refused, so a tag that moved is never staged without someone choosing it.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CREDENTIALS_VAR = "airlift_stage_registry_credentials"
DOCKER_HUB = "docker.io"
CERTS_D = "/etc/containers/certs.d"
MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
])
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class RegistryError(RuntimeError):
    """A login, pull or pin failed; the message is one sentence naming the fix."""


@dataclass(frozen=True)
class Reference:
    """An image reference split into registry, repository path, tag and digest."""

    registry: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.path}"

    @property
    def tagged(self) -> str:
        """The reference without its digest: what a tag points to (or name@digest)."""
        if self.tag:
            return f"{self.name}:{self.tag}"
        return f"{self.name}@{self.digest}" if self.digest else f"{self.name}:latest"

    @property
    def pull_ref(self) -> str:
        """What to pull: the tag when there is one (so a moved tag is caught), else the
        digest."""
        return f"{self.name}:{self.tag}" if self.tag or not self.digest else \
            f"{self.name}@{self.digest}"


def parse(ref: str) -> Reference:
    """Split `registry/path[:tag][@sha256:...]`; a bare `path` is on Docker Hub."""
    rest, _, digest = ref.partition("@")
    if digest and not _DIGEST.match(digest):
        raise RegistryError(f"image {ref}: the digest after @ must be sha256: and 64 hex "
                            "digits (as `podman image inspect --format {{.Digest}}` prints)")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
    tag = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
    return Reference(registry, path, tag, digest or None)


def rewrite(ref: str, mirrors: Mapping[str, str], entry_mirror: str | None = None) -> str:
    """The reference to pull: the entry's mirror registry, else the longest matching
    global prefix (`mcr.microsoft.com` -> `registry.internal:5000`), else unchanged."""
    parsed = parse(ref)
    if entry_mirror:
        return ref.replace(parsed.registry, entry_mirror.rstrip("/"), 1) if \
            ref.startswith(parsed.registry + "/") else f"{entry_mirror.rstrip('/')}/{ref}"
    for source in sorted(mirrors, key=len, reverse=True):
        prefix = source.rstrip("/")
        if ref == prefix or ref.startswith(prefix + "/"):
            return mirrors[source].rstrip("/") + ref[len(prefix):]
    return ref


def podman(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], input=stdin, capture_output=True, text=True,
                          check=False)


def tls_flag(registry: str, insecure: set[str]) -> list[str]:
    return ["--tls-verify=false"] if registry in insecure else []


@contextmanager
def logged_in(registries: set[str], credentials: Mapping[str, Any],
              insecure: set[str]) -> Iterator[Path | None]:
    """A temporary auth file holding a login to each registry that has credentials.

    Yields None when no registry needs one. The directory is 0700 and removed on exit,
    whatever happened inside.
    """
    needed = sorted(registry for registry in registries if registry in credentials)
    if not needed:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="airlift-registry-auth-"))
    try:
        authfile = folder / "auth.json"
        for registry in needed:
            entry = credentials[registry] or {}
            username, password = entry.get("username"), entry.get("password")
            if not username or not password:
                raise RegistryError(
                    f"{CREDENTIALS_VAR}[{registry!r}] needs a username and a password "
                    "(keep the password in Ansible Vault or an environment variable)")
            proc = podman(["login", "--authfile", str(authfile), "--username", str(username),
                           "--password-stdin", *tls_flag(registry, insecure), registry],
                          stdin=str(password))
            if proc.returncode != 0:
                refused = re.search(r"unauthorized|401|(invalid|incorrect) username|"
                                    r"authentication required", proc.stderr, re.IGNORECASE)
                reason = "refused the username or password" if refused else \
                    f"could not be reached ({_first_line(proc.stderr)})"
                raise RegistryError(
                    f"login to {registry} {reason}: check {CREDENTIALS_VAR}[{registry!r}]")
        yield authfile
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def short(digest: str | None) -> str:
    """sha256: and 12 hex digits, as podman shows image IDs."""
    return (digest or "none")[:19]


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["no message"])[-1][:200]


def local_identity(ref: str) -> dict[str, Any] | None:
    """ID, digest and repo digests of a local image, or None when it is not present."""
    proc = podman(["image", "inspect", ref])
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)[0]
    return {"id": "sha256:" + data["Id"].removeprefix("sha256:"), "digest": data.get("Digest"),
            "repo_digests": data.get("RepoDigests") or []}


def digests_of(identity: Mapping[str, Any]) -> set[str]:
    found = {identity.get("digest")} | {entry.split("@", 1)[1]
                                         for entry in identity.get("repo_digests", [])
                                         if "@" in entry}
    return {digest for digest in found if digest}


def stage_image(entry: Mapping[str, Any], mirrors: Mapping[str, str], authfile: Path | None,
                insecure: set[str], pull: bool,
                credentials: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Make the entry's image present under its catalog name, pulled (through its mirror)
    when allowed, and refuse it when its digest differs from the pin."""
    ref = entry["image"]
    wanted = parse(ref)
    source = parse(rewrite(ref, mirrors, entry.get("mirror")))
    if pull:
        auth = ["--authfile", str(authfile)] if authfile else []
        proc = podman(["pull", "--quiet", *auth, *tls_flag(source.registry, insecure),
                       source.pull_ref])
        if proc.returncode != 0:
            raise RegistryError(f"pulling {source.pull_ref} failed ({_first_line(proc.stderr)}): "
                                f"check the reference, the mirror and {CREDENTIALS_VAR}"
                                f"[{source.registry!r}]")
        identity = local_identity(source.pull_ref)
    else:
        identity = local_identity(wanted.tagged) or local_identity(source.pull_ref)
    if identity is None:
        raise RegistryError(f"image {ref} is not present locally: pull it, or set "
                            "airlift_stage_pull: true")
    if pull:
        # podman lists every name with every digest it knows, so ask the registry which
        # digest the tag points to now (a push recompresses: not the build's digest).
        served = source.digest if not source.tag else remote_digest(
            source.pull_ref, credentials or {}, insecure)
        if served not in digests_of(identity):
            raise RegistryError(f"{source.pull_ref} changed while it was pulled (now "
                                f"{short(served)}): run the stage again")
        identity["digest"] = served
    if wanted.digest and wanted.digest != identity["digest"] and (
            pull or wanted.digest not in digests_of(identity)):
        # Short digests keep this sentence whole in the one-line summary.
        raise RegistryError(
            f"{source.pull_ref} is now {short(identity['digest'])}, not the pinned "
            f"{short(wanted.digest)}: review the new image, then update the pin")
    if wanted.digest:
        identity["digest"] = wanted.digest
    if wanted.tag and source.tagged != wanted.tagged:
        # Pulled through a mirror: the bundle carries the catalog's name.
        proc = podman(["tag", identity["id"], wanted.tagged])
        if proc.returncode != 0:
            raise RegistryError(f"podman tag {wanted.tagged} failed: {_first_line(proc.stderr)}")
    return {"catalog": entry["catalog"], "ref": ref, "local": wanted.tagged,
            "pulled_from": source.pull_ref if source.pull_ref != wanted.pull_ref else None,
            "tag": wanted.tag, "pinned": wanted.digest, **identity}


def remote_digest(ref: str, credentials: Mapping[str, Any], insecure: set[str],
                  timeout: float = 20.0) -> str:
    """The digest a registry serves for a tag now (HEAD on the manifest), without pulling.

    Speaks the registry API's Basic and Bearer token logins with the stage's credentials.
    """
    parsed = parse(ref)
    host = "registry-1.docker.io" if parsed.registry == DOCKER_HUB else parsed.registry
    entry = credentials.get(parsed.registry) or {}
    basic = None
    if entry.get("username") and entry.get("password"):
        basic = "Basic " + base64.b64encode(
            f"{entry['username']}:{entry['password']}".encode()).decode()
    reference = parsed.tag or parsed.digest or "latest"
    schemes = ["https", "http"] if parsed.registry in insecure else ["https"]
    context = ssl.create_default_context()
    # podman trusts a registry's own CA from certs.d (an internal mirror's): so does this.
    for ca in sorted(Path(CERTS_D, parsed.registry).glob("*.crt")):
        context.load_verify_locations(cafile=str(ca))
    if parsed.registry in insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    last: Exception | None = None
    for scheme in schemes:
        url = f"{scheme}://{host}/v2/{parsed.path}/manifests/{reference}"
        try:
            return _head_digest(url, basic, context, timeout)
        except (urllib.error.URLError, ssl.SSLError, ConnectionError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                raise _http_problem(exc, ref, parsed.registry) from None
            last = exc
    raise RegistryError(f"cannot reach {parsed.registry} to read {ref}'s digest ({last}): "
                        "check the mirror and the network")


def _http_problem(exc: urllib.error.HTTPError, ref: str, registry: str) -> RegistryError:
    if exc.code in (401, 403):
        return RegistryError(f"{registry} refused the username or password: check "
                             f"{CREDENTIALS_VAR}[{registry!r}]")
    return RegistryError(f"{registry} answered {exc.code} for {ref}: check the reference")


def _head_digest(url: str, authorization: str | None, context: ssl.SSLContext,
                 timeout: float) -> str:
    def head(auth: str | None) -> str:
        request = urllib.request.Request(url, method="HEAD", headers={
            "Accept": MANIFEST_TYPES, **({"Authorization": auth} if auth else {})})
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
            return response.headers.get("Docker-Content-Digest", "")

    try:
        return head(None)
    except urllib.error.HTTPError as exc:
        if exc.code != 401:
            raise
        challenge = exc.headers.get("WWW-Authenticate", "")
    if challenge.lower().startswith("bearer"):
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = urllib.parse.urlencode({k: v for k, v in params.items()
                                        if k in ("service", "scope")})
        token_request = urllib.request.Request(
            f"{params.get('realm', '')}?{query}",
            headers={"Authorization": authorization} if authorization else {})
        with urllib.request.urlopen(token_request, context=context, timeout=timeout) as reply:
            body = json.loads(reply.read())
        return head("Bearer " + (body.get("token") or body.get("access_token") or ""))
    return head(authorization)


def moved(ref: str, digest: str | None, previous: Mapping[str, Any] | None) -> str | None:
    """The digest the previous bundle carried under this reference, when the registry's
    (or the pulled image's) digest is none of that image's digests."""
    for image in (previous or {}).get("images", []):
        if image.get("ref") == ref and image.get("digest") and digest and \
                digest not in digests_of(image):
            return str(image["digest"])
    return None
