"""The local lab: fleet hosts and simulator images built offline, cached by recipe.

A fleet host is a podman container running systemd as PID 1 with `--network none`,
started from a Debian rootfs made with debootstrap. Images are tagged with a hash of
their recipe, so they are rebuilt only when the recipe changes, and a tag is set only
after a build succeeded: a failed build never leaves an image that looks cached.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from airlift import podman
from airlift.paths import cache_dir, lab_dir, state_dir

HOST_IMAGE = "localhost/airlift-lab-host"
DOCKER_HOST_IMAGE = "localhost/airlift-lab-host-docker"
SIM_BASE_IMAGE = "localhost/airlift-sim-base"
SIM_IMAGE = "localhost/airlift-sim"
PROXY_IMAGE = "localhost/airlift-proxy"
HOST_PREFIX = "airlift-lab-"
DOCKER_HOST_PREFIX = f"{HOST_PREFIX}docker-"
FLEET_LABEL = "airlift.lab=fleet"
# The lab inventory groups hosts by this label (inventories/lab: lab_docker gets
# airlift_container_engine docker).
ENGINE_LABEL = "airlift.lab.engine"
ENGINES = ("podman", "docker")
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# How a fleet host runs: systemd as PID 1, no network. The host keeps the default (host)
# cgroup namespace: with a private one on cgroup v1, podman bind-mounts the whole
# name=systemd tree and the host's systemd escapes to its root. Nested containers get a
# private namespace instead (lab/host/overlay/etc/containers/containers.conf).
HOST_RUN_OPTIONS = ("--privileged", "--systemd=always", "--network=none")
# Bump when the build steps below change in a way the recipe files do not show.
BUILD_LOGIC_VERSION = "2"

# Trimmed from the simulator base: documentation, locales and apt's caches.
SIM_BASE_PRUNE = (
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
    "var/cache/apt", "var/lib/apt/lists", "usr/lib/python3.11/test",
    "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/idlelib",
    "usr/lib/python3.11/lib2to3", "usr/lib/python3.11/pydoc_data",
)


class LabError(RuntimeError):
    """A lab step failed; the message says what to do."""


def say(message: str) -> None:
    print(f"[lab] {message}", flush=True)


def require_tools(tools: Iterable[str] = ("podman", "runc")) -> None:
    missing = podman.missing_tools(tuple(tools))
    if missing:
        raise LabError(
            f"missing {', '.join(missing)}: install with `apt-get install {' '.join(missing)}` "
            "(or run `make demo`, which installs it on Debian)"
        )


def recipe_hash(paths: Iterable[Path], *extra: str) -> str:
    """Content hash of the files (and extra strings) an image is built from."""
    digest = hashlib.sha256(BUILD_LOGIC_VERSION.encode())
    for path in sorted(paths):
        for file in sorted(p for p in ([path] if path.is_file() else path.rglob("*"))
                           if p.is_file()):
            digest.update(str(file.relative_to(lab_dir())).encode())
            digest.update(file.read_bytes())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()[:12]


def read_package_list(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def debootstrap(target: Path, packages: list[str]) -> None:
    require_tools(("debootstrap",))
    mirror = os.environ.get("AIRLIFT_DEBIAN_MIRROR", DEFAULT_MIRROR)
    debs = cache_dir() / "debs"
    debs.mkdir(exist_ok=True)
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
           f"--cache-dir={debs}", SUITE, str(target), mirror]
    say(f"debootstrap {SUITE} with {len(packages)} packages into {target.name} (about a minute)")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise LabError(f"debootstrap failed (mirror {mirror}; set AIRLIFT_DEBIAN_MIRROR "
                       f"to use another):\n{tail}")


def import_rootfs(rootfs: Path, ref: str, changes: list[str]) -> None:
    """Import a directory as an image under a temporary name, then tag it as `ref`."""
    staging_ref = f"{ref}-partial"
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."],
                           stdout=subprocess.PIPE)
    try:
        podman.run([*args, "-", staging_ref], stdin=tar.stdout)
    finally:
        tar.stdout.close()
        tar.wait()
    if tar.returncode != 0:
        podman.run(["rmi", "-f", staging_ref], check=False)
        raise LabError(f"packing {rootfs} failed (tar exit {tar.returncode})")
    podman.run(["tag", staging_ref, ref])
    podman.run(["untag", staging_ref, staging_ref])


def prune_older(ref: str) -> None:
    """Remove other tags of ref's repository (older recipes); ones still in use stay."""
    repository = ref.rsplit(":", 1)[0]
    listed = podman.run(["images", "--filter", f"reference={repository}",
                         "--format", "{{.Repository}}:{{.Tag}}"]).stdout.split()
    for other in listed:
        if other not in (ref, f"{repository}:latest"):
            podman.run(["rmi", other], check=False)


def tag_latest(ref: str) -> None:
    repository = ref.rsplit(":", 1)[0]
    podman.run(["tag", ref, f"{repository}:latest"])


def build_rootfs_image(ref: str, packages: list[str], customise: Callable[[Path], None],
                       changes: list[str]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="airlift-rootfs-", dir=cache_dir()))
    try:
        rootfs = workdir / "rootfs"
        debootstrap(rootfs, packages)
        customise(rootfs)
        import_rootfs(rootfs, ref, changes)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def host_packages(engine: str = "podman") -> list[str]:
    """The host's Debian packages: lab/host's list, edited by lab/host-docker's for docker
    ("-name" drops a package, a plain name adds one)."""
    packages = read_package_list(lab_dir() / "host" / "packages.txt")
    if engine == "docker":
        for line in read_package_list(lab_dir() / "host-docker" / "packages.txt"):
            if line.startswith("-"):
                packages = [package for package in packages if package != line[1:]]
            elif line not in packages:
                packages.append(line)
    return packages


def host_recipe(engine: str = "podman") -> list[Path]:
    if engine not in ENGINES:
        raise LabError(f"engine {engine!r}: give one of {', '.join(ENGINES)}")
    recipe = [lab_dir() / "host"]
    if engine == "docker":
        recipe.append(lab_dir() / "host-docker")
    return recipe


def ensure_host_image(force: bool = False, engine: str = "podman") -> str:
    """The fleet-host image for the current recipe and engine; built only when missing.

    The docker variant is the podman host without podman, with Debian's docker.io and
    lab/host-docker/overlay (dockerd on vfs, a private cgroup namespace per container).
    """
    recipes = host_recipe(engine)
    image = DOCKER_HOST_IMAGE if engine == "docker" else HOST_IMAGE
    ref = f"{image}:{recipe_hash(recipes, SUITE)}"
    if podman.image_exists(ref) and not force:
        tag_latest(ref)
        return ref
    require_tools()
    packages = host_packages(engine)

    def customise(rootfs: Path) -> None:
        for recipe in recipes:
            shutil.copytree(recipe / "overlay", rootfs, dirs_exist_ok=True)
        # Host keys are made per host at `lab up`; baked ones would be shared by all.
        for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        # A non-root login with sudo, to exercise become as real sites use it.
        (rootfs / "etc/sudoers.d/airlift-lab").chmod(0o440)
        subprocess.run(["chroot", str(rootfs), "useradd", "--create-home", "--shell",
                        "/bin/bash", "airlift"], check=True, capture_output=True)
        # sshd runs only in inetd mode over the exec pipe; no listener, no keygen unit.
        subprocess.run(["systemctl", f"--root={rootfs}", "mask", "ssh.service"],
                       check=True, capture_output=True)
        for path in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / path, ignore_errors=True)
            (rootfs / path).mkdir(parents=True, exist_ok=True)

    say(f"building {engine} fleet-host image {ref}")
    build_rootfs_image(ref, packages, customise,
                       ['CMD=["/sbin/init"]', "STOPSIGNAL=SIGRTMIN+3",
                        f"LABEL=airlift.lab.image=host-{engine}"
                        if engine == "docker" else "LABEL=airlift.lab.image=host"])
    tag_latest(ref)
    prune_older(ref)
    return ref


def ensure_sim_base(force: bool = False) -> str:
    ref = f"{SIM_BASE_IMAGE}:{recipe_hash([], SUITE, 'python3-minimal', *SIM_BASE_PRUNE)}"
    if podman.image_exists(ref) and not force:
        return ref

    def customise(rootfs: Path) -> None:
        for path in SIM_BASE_PRUNE:
            shutil.rmtree(rootfs / path, ignore_errors=True)

    say(f"building simulator base image {ref}")
    build_rootfs_image(ref, ["python3-minimal", "libpython3.11-stdlib"], customise,
                       ["LABEL=airlift.lab.image=sim-base"])
    prune_older(ref)
    return ref


def ensure_proxy_image(force: bool = False) -> str:
    """The front-door proxy image (Debian's nginx, lab/proxy); built only when missing.

    The rendered nginx.conf, the host's certificate and key and the access-log directory
    are mounted at run time (paths in airlift.frontdoor); the image holds no key.
    """
    recipe = lab_dir() / "proxy"
    ref = f"{PROXY_IMAGE}:{recipe_hash([recipe], SUITE, *SIM_BASE_PRUNE)}"
    if podman.image_exists(ref) and not force:
        tag_latest(ref)
        return ref
    require_tools()
    packages = read_package_list(recipe / "packages.txt")

    def customise(rootfs: Path) -> None:
        for path in SIM_BASE_PRUNE:
            shutil.rmtree(rootfs / path, ignore_errors=True)
        # Only airlift's config is used; Debian's default site would listen on port 80.
        for path in ("etc/nginx/sites-enabled", "etc/nginx/sites-available"):
            shutil.rmtree(rootfs / path, ignore_errors=True)
        (rootfs / "etc/airlift/frontdoor/tls").mkdir(parents=True, exist_ok=True)
        (rootfs / "var/log/airlift-frontdoor").mkdir(parents=True, exist_ok=True)

    say(f"building front-door proxy image {ref}")
    build_rootfs_image(ref, packages, customise,
                       # "CMD [...]": podman import splits a change at its first space.
                       ['CMD ["/usr/sbin/nginx", "-c", "/etc/airlift/frontdoor/nginx.conf", '
                        '"-g", "daemon off;"]',
                        "STOPSIGNAL=SIGQUIT", "LABEL=airlift.lab.image=proxy"])
    tag_latest(ref)
    prune_older(ref)
    return ref


def simulator_services() -> dict[str, dict[str, object]]:
    return yaml.safe_load((lab_dir() / "simulator" / "services.yml").read_text())


@dataclass(frozen=True)
class SimImage:
    service: str
    ref: str
    recipe: str


def sim_image_ref(service: str, version: str, padding_mb: int = 0) -> str:
    suffix = f"-pad{padding_mb}" if padding_mb else ""
    return f"{SIM_IMAGE}/{service}:{version}{suffix}"


def ensure_simulator_images(version: str = "1.0", services: Iterable[str] | None = None,
                            padding_mb: int = 0, force: bool = False) -> list[SimImage]:
    """Build each service type's image (and an optional padded variant) if missing."""
    require_tools()
    base = ensure_sim_base(force=False)
    catalog = simulator_services()
    chosen = list(services or catalog)
    unknown = sorted(set(chosen) - set(catalog))
    if unknown:
        raise LabError(f"unknown simulator service {unknown}; known: {sorted(catalog)}")
    sim_dir = lab_dir() / "simulator"
    built = []
    for service in chosen:
        spec = catalog[service]
        recipe = recipe_hash([sim_dir / "simulator.py", sim_dir / "Containerfile"],
                             base, version, repr(sorted(spec.items())))
        ref = sim_image_ref(service, version)
        plain_recipe = recipe
        if spec.get("gpu_device"):
            # A GPU type: the plain image plus the wrapper that needs the device.
            recipe = recipe_hash([sim_dir / "sim_gpu.py", sim_dir / "Containerfile.gpu"],
                                 plain_recipe)
        if force or not _has_recipe(ref, recipe):
            say(f"building simulator image {ref}")
            build_args = {
                "BASE_IMAGE": base, "SERVICE": service, "API_TYPE": spec["api_type"],
                "ROUTE": spec["path"], "METER": spec["meter"], "UNIT": spec["unit"],
                "WARMUP_SECONDS": spec["warmup_seconds"], "IMAGE_VERSION": version,
                "RUN_AS": spec["user"], "REQUIRES": spec.get("requires", ""),
            }
            _build(sim_dir / "Containerfile", sim_dir, ref, build_args, plain_recipe)
            if spec.get("gpu_device"):
                _build(sim_dir / "Containerfile.gpu", sim_dir, ref,
                       {"FROM_IMAGE": ref, "GPU_DEVICE": spec["gpu_device"]}, recipe)
        if padding_mb:
            ref = _ensure_padded(ref, recipe, padding_mb, service, version)
        built.append(SimImage(service, ref, recipe))
    return built


def _has_recipe(ref: str, recipe: str) -> bool:
    return podman.image_exists(ref) and podman.image_labels(ref).get("airlift.recipe") == recipe


def _build(containerfile: Path, context: Path, ref: str, build_args: dict[str, object],
           recipe: str) -> None:
    args = ["build", "--pull=never", "--file", str(containerfile),
            "--label", f"airlift.recipe={recipe}", "--tag", ref]
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    podman.run([*args, str(context)])


def _ensure_padded(ref: str, recipe: str, padding_mb: int, service: str, version: str) -> str:
    padded_recipe = f"{recipe}-pad{padding_mb}"
    padded = sim_image_ref(service, version, padding_mb)
    if _has_recipe(padded, padded_recipe):
        return padded
    say(f"building {padded} with {padding_mb} MB of padding")
    with tempfile.TemporaryDirectory(dir=cache_dir()) as context:
        with open(Path(context) / "padding.bin", "wb") as handle:
            for _ in range(padding_mb):
                handle.write(os.urandom(1024 * 1024))
        _build(lab_dir() / "simulator" / "Containerfile.padding", Path(context), padded,
               {"FROM_IMAGE": ref}, padded_recipe)
    return padded


# -- fleet hosts ----------------------------------------------------------------------


def host_names(count: int) -> list[str]:
    return [f"{HOST_PREFIX}{index}" for index in range(1, count + 1)]


def fleet() -> list[dict[str, str]]:
    """Every lab host podman knows of, with its state."""
    hosts = []
    for entry in podman.containers_with_label(FLEET_LABEL):
        names = entry.get("Names") or []
        name = names[0] if names else entry["Id"][:12]
        state = "stale" if podman.is_stale(name) else entry.get("State", "unknown")
        hosts.append({"name": name, "state": state, "image": entry.get("Image", "")})
    return sorted(hosts, key=lambda host: host["name"])


def wait_for_systemd(name: str, timeout: float = 90) -> str:
    """Block until systemd in the host finished booting; return its state."""
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        proc = podman.run(["exec", name, "systemctl", "is-system-running"], check=False)
        state = proc.stdout.strip() or "unknown"
        if state in {"running", "degraded"}:
            return state
        if podman.container_state(name) == "exited":
            raise LabError(f"{name}: exited while booting; {inotify_hint()}; "
                           f"see `podman logs {name}`")
        time.sleep(1)
    raise LabError(f"{name}: systemd did not finish booting in {timeout:.0f}s (state {state}); "
                   f"see `podman logs {name}`")


def inotify_hint() -> str:
    """Why a host dies at boot when many run: systemd without an inotify instance exits
    silently (status 255, no log), and the kernel's default allows 128 per user."""
    path = Path("/proc/sys/fs/inotify/max_user_instances")
    limit = path.read_text().strip() if path.exists() else "?"
    return (f"with many hosts up this is root's inotify instance limit (each host's systemd "
            f"needs about 6; fs.inotify.max_user_instances is {limit}): raise it with "
            "`sysctl -w fs.inotify.max_user_instances=512` or run fewer hosts")


def remove_stale(name: str, consequence: str) -> None:
    """Remove a container whose processes died behind podman's back."""
    say(f"{name}: podman records it as up but its processes are gone (killed with "
        f"conmon); {consequence}")
    # The first stop only moves podman's record to "stopping"; then rm can go.
    podman.run(["stop", "--time", "0", name], check=False)
    podman.run(["rm", "--force", name])


def reap(prefix: str = "airlift-") -> list[str]:
    """Remove stale containers of this project (lab hosts, molecule instances).

    Molecule's own destroy cannot remove them, so `make molecule` reaps first.
    """
    out = podman.run(["ps", "--format", "{{.Names}}"]).stdout.split()
    stale = [name for name in out if name.startswith(prefix) and podman.is_stale(name)]
    for name in stale:
        remove_stale(name, "removing it")
    return stale


def docker_host_names(count: int) -> list[str]:
    """The docker hosts' names: airlift-lab-docker-1.. (in the fleet, group lab_docker)."""
    return [f"{DOCKER_HOST_PREFIX}{index}" for index in range(1, count + 1)]


def host_engine(name: str) -> str:
    """The engine a lab host runs its services with (by its name, as `up` made it)."""
    return "docker" if name.startswith(DOCKER_HOST_PREFIX) else "podman"


def mixed_fleet() -> list[str]:
    """One podman and one docker host, up: the lab tests' two-host fleet, so that every
    phase runs on both engines in the same runs."""
    up(1, docker=1)
    return [*host_names(1), *docker_host_names(1)]


def up(count: int = 3, docker: int = 0) -> list[str]:
    """Start `count` podman hosts and `docker` docker hosts; running ones are left alone,
    stopped ones are started."""
    if count < 1:
        raise LabError(f"{count} hosts: the lab needs at least one host, give a count of 1 or more")
    if docker < 0:
        raise LabError(f"{docker} docker hosts: give 0 or more")
    require_tools()
    wanted = [(name, "podman") for name in host_names(count)]
    wanted += [(name, "docker") for name in docker_host_names(docker)]
    images = {engine: ensure_host_image(engine=engine) for engine in {e for _, e in wanted}}
    changed = []
    for name, engine in wanted:
        if podman.is_stale(name):
            remove_stale(name, "recreating it from the image, its disk is lost")
        state = podman.container_state(name)
        if state == "running":
            continue
        if state is not None:
            say(f"starting {name} (was {state}; its disk is kept)")
            podman.run(["start", name])
        else:
            say(f"creating {name}" + (f" ({engine})" if engine != "podman" else ""))
            podman.run(["run", "--detach", "--name", name, "--hostname", name,
                        "--label", FLEET_LABEL, "--label", f"{ENGINE_LABEL}={engine}",
                        *HOST_RUN_OPTIONS, images[engine]])
        changed.append(name)
    names = [name for name, _ in wanted]
    for name in names:
        wait_for_systemd(name)
    from airlift import labssh

    labssh.provision(names)
    ensure_signing_key()
    return changed


def ensure_signing_key() -> Path:
    """The lab's bundle signing key pair (lab/.state/keys), made once."""
    from airlift import bundle

    keys = state_dir() / "keys"
    if not (keys / "bundle-signing.key").exists():
        bundle.keygen(keys)
    return keys / "bundle-signing.key"


def down() -> list[str]:
    removed = []
    for host in fleet():
        podman.run(["rm", "--force", "--time", "5", host["name"]])
        removed.append(host["name"])
    return removed


def stop(names: Iterable[str]) -> None:
    for name in names:
        podman.run(["stop", "--time", "10", name])


# -- a fake GPU on one lab host -------------------------------------------------------

FAKE_GPU_SPEC = "/etc/cdi/airlift-fake-gpu.yaml"
FAKE_GPU_NODE = "/dev/nvidia0-fake"
FAKE_NVIDIA_SMI = "/usr/local/bin/nvidia-smi"


def fake_gpu(host: str, spec: bool = True, driver: bool = True) -> None:
    """Give a running lab host a fake NVIDIA GPU, or take (parts of) it away.

    `spec` places the CDI spec for nvidia.com/gpu and its harmless device node (a char
    device with /dev/null's numbers); `driver` places a fake nvidia-smi. Either false
    removes that part, so a test can show preflight refusing a host without the spec.
    """
    if podman.container_state(host) != "running":
        raise LabError(f"{host} is not running: start it with `airlift lab up`")
    files = lab_dir() / "gpu"
    if spec:
        podman.run(["exec", host, "sh", "-c", f"test -c {FAKE_GPU_NODE} || mknod -m 666 "
                    f"{FAKE_GPU_NODE} c 1 3; mkdir -p /etc/cdi"])
        podman.run(["cp", str(files / "airlift-fake-gpu.yaml"), f"{host}:{FAKE_GPU_SPEC}"])
    else:
        podman.run(["exec", host, "rm", "-f", FAKE_GPU_SPEC, FAKE_GPU_NODE])
    if driver:
        podman.run(["cp", str(files / "nvidia-smi"), f"{host}:{FAKE_NVIDIA_SMI}"])
        podman.run(["exec", host, "chmod", "755", FAKE_NVIDIA_SMI])
    else:
        podman.run(["exec", host, "rm", "-f", FAKE_NVIDIA_SMI])
