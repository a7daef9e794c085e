"""The `airlift` command. Each verb maps onto a playbook or a lab step; nothing here
is required to use the playbooks with plain `ansible-playbook`."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from airlift import (
    __version__,
    bundle,
    cli_ca,
    cli_playbooks,
    lab,
    podman,
    runner,
    traffic,
    usage,
    usage_report,
)
from airlift.paths import lab_dir, project_root

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def cmd_lab_up(args: argparse.Namespace) -> int:
    changed = lab.up(args.count, docker=args.docker)
    print_status()
    total = args.count + args.docker
    print(f"lab: {len(changed)} host(s) started, {total - len(changed)} already running")
    return EXIT_OK


def cmd_lab_down(_: argparse.Namespace) -> int:
    removed = lab.down()
    print(f"lab: removed {len(removed)} host(s)" + (f": {', '.join(removed)}" if removed else ""))
    return EXIT_OK


def print_status() -> None:
    hosts = lab.fleet()
    if not hosts:
        print("lab: no hosts (start some with `airlift lab up [N]`)")
    for host in hosts:
        print(f"{host['name']:<20} {host['state']:<10} {host['image']}")


def cmd_lab_status(_: argparse.Namespace) -> int:
    print_status()
    return EXIT_OK


def cmd_lab_reap(_: argparse.Namespace) -> int:
    stale = lab.reap()
    print(f"{len(stale)} stale container(s) removed")
    return EXIT_OK


def send_traffic(hosts: list[str], requests: int) -> int:
    """Metered requests to each demo service on each host, through its front door."""
    planned = traffic.plan(traffic.demo_services(), requests=requests)
    for host in hosts:
        try:
            metered = traffic.send(host, planned)
        except traffic.TrafficError as error:
            print(f"airlift: {error}", file=sys.stderr)
            return EXIT_FAILED
        print(f"{host}: sent " + ", ".join(
            f"{item.service} {item.requests} request(s), {metered[item.service]} {item.meter}"
            for item in planned))
    return EXIT_OK


def cmd_lab_gpu(args: argparse.Namespace) -> int:
    lab.fake_gpu(args.host, spec=not args.remove and not args.no_spec,
                 driver=not args.remove)
    state = ("removed" if args.remove else
             "nvidia-smi only, no CDI spec" if args.no_spec else "CDI spec and nvidia-smi")
    print(f"lab: fake GPU on {args.host}: {state}")
    return 0


def cmd_lab_traffic(args: argparse.Namespace) -> int:
    if args.requests < 1 or args.hosts < 1:
        print("airlift: --requests and --hosts must be at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.docker_hosts < 0:
        print("airlift: --docker-hosts must be 0 or more", file=sys.stderr)
        return EXIT_BAD_INPUT
    hosts = lab.host_names(args.hosts) + lab.docker_host_names(args.docker_hosts)
    return send_traffic(hosts, requests=args.requests)


def cmd_lab_images(args: argparse.Namespace) -> int:
    # Checked before the host image: nothing is built for a command that cannot succeed.
    if args.padding_mb < 0:
        raise lab.LabError(f"--padding-mb {args.padding_mb} is negative: give 0 (no padding) "
                           "or a size in MB")
    unknown = sorted(set(args.service or ()) - set(lab.simulator_services()))
    if unknown:
        raise lab.LabError(f"unknown simulator service {', '.join(unknown)}: give one of "
                           f"{', '.join(sorted(lab.simulator_services()))}")
    print(f"host image: {lab.ensure_host_image(force=args.force)}")
    print(f"docker host image: {lab.ensure_host_image(force=args.force, engine='docker')}")
    images = lab.ensure_simulator_images(version=args.version, services=args.service or None,
                                         padding_mb=args.padding_mb, force=args.force)
    for image in images:
        print(f"simulator {image.service}: {image.ref}")
    print(f"front-door proxy image: {lab.ensure_proxy_image(force=args.force)}")
    return EXIT_OK


def cmd_bundle_keygen(args: argparse.Namespace) -> int:
    private, public = bundle.keygen(Path(args.out))
    print(f"private key (keep on the connected side, 0600): {private}")
    print(f"public key (deliver to the bastion separately): {public}")
    return EXIT_OK


def cmd_bundle_sign(args: argparse.Namespace) -> int:
    manifest = bundle.sign(Path(args.bundle), Path(args.key))
    print(f"signed {args.bundle}: {len(manifest['files'])} files")
    return EXIT_OK


def cmd_bundle_verify(args: argparse.Namespace) -> int:
    # A folder that is no bundle is a wrong path (2), not a bundle that failed (1).
    if not (Path(args.bundle) / bundle.MANIFEST).is_file():
        raise bundle.BundleError(f"no {bundle.MANIFEST} in {args.bundle}: give the bundle "
                                 "folder that `airlift stage` wrote (it holds manifest.json)")
    result = bundle.verify(Path(args.bundle), Path(args.public_key),
                           None if args.no_cache else bundle.default_hash_cache())
    if result.ok:
        files = result.manifest["files"]
        size = sum(entry["size"] for entry in files)
        print(f"bundle {args.bundle} is intact: {len(files)} files, {size} bytes, "
              f"{len(result.manifest['images'])} images, "
              f"{len(result.manifest['licenses'])} licenses")
        return EXIT_OK
    print(f"bundle {args.bundle} is NOT intact ({len(result.problems)} problems):")
    for problem in result.problems:
        print(f"  - {problem}")
    return EXIT_FAILED


def cmd_report_merge(args: argparse.Namespace) -> int:
    """Merge usage reports collected separately; per (host, service) the newest wins."""
    _, _, lines = usage_report.merge([Path(path) for path in args.run_dirs], Path(args.out),
                                     commitment_file=args.commitment_file,
                                     warn_percent=args.warn_percent)
    print("\n".join(lines))
    return EXIT_OK


def run_playbook(playbook: str, inventory: str, extra: Sequence[str] = ()) -> int:
    """Run a playbook from the project root, printing the equivalent command first."""
    cmd = ["ansible-playbook", "-i", inventory, playbook, *extra]
    print(f"+ {shlex.join(cmd)}", flush=True)
    env = runner.with_own_bin(podman.environment())
    env.setdefault("ANSIBLE_CONFIG", str(project_root() / "ansible.cfg"))
    return subprocess.run(cmd, cwd=project_root(), env=env, check=False).returncode


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: lab fleet, images, certificates, rollout behind the front
    door, usage, reports. The fleet mixes engines: podman hosts and docker hosts."""
    if args.docker_hosts < 0:
        raise lab.LabError(f"--docker-hosts {args.docker_hosts}: give 0 or more")
    lab.up(args.hosts, docker=args.docker_hosts)
    hosts = lab.host_names(args.hosts) + lab.docker_host_names(args.docker_hosts)
    lab.ensure_simulator_images()
    lab.ensure_proxy_image()
    # One run id for the rollout and the collection: all reports land in one folder.
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    demo_vars = ["-e", f"@{lab_dir() / 'frontdoor.yml'}"]
    same_run = [*demo_vars, "-e", f"airlift_run_id={run_id}"]
    rc = run_playbook("playbooks/stage.yml", "inventories/lab", demo_vars)
    if rc == EXIT_OK:
        rc = run_playbook("playbooks/certificates.yml", "inventories/lab", demo_vars)
    if rc == EXIT_OK:
        rc = run_playbook("site.yml", "inventories/lab", same_run)
    if rc == EXIT_OK:
        rc = send_traffic(hosts, requests=2)
    if rc == EXIT_OK:
        rc = run_playbook("playbooks/collect_usage.yml", "inventories/lab", same_run)
    run_dir = project_root() / "reports" / run_id
    print(f"\nairlift demo finished with exit code {rc}; reports of this run are in {run_dir}/")
    if run_dir.is_dir():
        for path in sorted(run_dir.rglob("*")):
            if path.is_file() and "raw" not in path.parts:
                print(f"  {path.relative_to(run_dir)}")
        print(f"  ... and the raw usage records, by sha256, in {run_dir / 'usage' / 'raw'}/")
    if rc == EXIT_OK:
        probe = ("import ssl, urllib.request as u; print(u.urlopen('https://localhost:15000/"
                 "status', context=ssl.create_default_context(cafile='/etc/airlift/frontdoor/"
                 "tls/ca.crt')).read().decode())")
        print("\nEach lab host's services answer through its front door (HTTPS, the lab CA):\n"
              f"  CONTAINERS_CONF={lab_dir() / 'containers.conf'} podman exec "
              f"{lab.host_names(1)[0]} python3 -c {shlex.quote(probe)}")
    return rc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airlift", description=__doc__)
    parser.add_argument("--version", action="version", version=f"airlift {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)

    lab_parser = verbs.add_parser("lab", help="the local lab fleet (podman + systemd hosts)")
    lab_verbs = lab_parser.add_subparsers(dest="lab_verb", required=True)
    up = lab_verbs.add_parser("up", help="start N lab hosts (default 3)")
    up.add_argument("count", nargs="?", type=int, default=3)
    up.add_argument("--docker", type=int, default=0, metavar="N",
                    help="also start N docker hosts (airlift-lab-docker-1..; default 0)")
    up.set_defaults(func=cmd_lab_up)
    lab_verbs.add_parser("down", help="remove every lab host").set_defaults(func=cmd_lab_down)
    lab_verbs.add_parser("status", help="list lab hosts").set_defaults(func=cmd_lab_status)
    lab_verbs.add_parser("reap", help="remove airlift-* containers whose processes are gone"
                         ).set_defaults(func=cmd_lab_reap)
    gpu_parser = lab_verbs.add_parser(
        "gpu", help="give a lab host a fake NVIDIA GPU (CDI spec, device node, nvidia-smi)")
    gpu_parser.add_argument("host", help="a running lab host, e.g. airlift-lab-1")
    gpu_parser.add_argument("--no-spec", action="store_true",
                            help="only nvidia-smi: no CDI spec (preflight must refuse)")
    gpu_parser.add_argument("--remove", action="store_true", help="take the fake GPU away")
    gpu_parser.set_defaults(func=cmd_lab_gpu)
    traffic_parser = lab_verbs.add_parser(
        "traffic", help="send metered requests to the demo's services through the front door")
    traffic_parser.add_argument("--hosts", type=int, default=3, help="first N lab hosts (3)")
    traffic_parser.add_argument("--docker-hosts", type=int, default=1,
                                help="first N docker hosts (1, as `airlift demo`)")
    traffic_parser.add_argument("--requests", type=int, default=2,
                                help="requests per service and host (2)")
    traffic_parser.set_defaults(func=cmd_lab_traffic)
    images = lab_verbs.add_parser("images", help="build (or reuse) host and simulator images")
    images.add_argument("--version", default="1.0", help="simulator image version tag")
    images.add_argument("--service", action="append", help="only this service type")
    images.add_argument("--padding-mb", type=int, default=0,
                        help="also build a variant with N MB of padding")
    images.add_argument("--force", action="store_true", help="rebuild even if cached")
    images.set_defaults(func=cmd_lab_images)

    bundle_parser = verbs.add_parser("bundle", help="signed bundles that cross the air gap")
    bundle_verbs = bundle_parser.add_subparsers(dest="bundle_verb", required=True)
    keygen = bundle_verbs.add_parser("keygen", help="make an Ed25519 signing key pair")
    keygen.add_argument("--out", required=True, help="directory for the key pair")
    keygen.set_defaults(func=cmd_bundle_keygen)
    sign = bundle_verbs.add_parser("sign", help="sign a bundle's manifest")
    sign.add_argument("bundle")
    sign.add_argument("--key", required=True, help="Ed25519 private key (PEM)")
    sign.set_defaults(func=cmd_bundle_sign)
    # `airlift verify` is the same as `airlift bundle verify`: the bastion's first step.
    for subparsers in (bundle_verbs, verbs):
        verify = subparsers.add_parser("verify", help="verify a bundle's signature and files")
        verify.add_argument("bundle")
        verify.add_argument("--public-key", required=True, help="Ed25519 public key (PEM)")
        verify.add_argument("--no-cache", action="store_true",
                            help="hash every file even if unchanged since its last verification")
        verify.set_defaults(func=cmd_bundle_verify)

    report_parser = verbs.add_parser("report", help="usage reports")
    report_verbs = report_parser.add_subparsers(dest="report_verb", required=True)
    merge = report_verbs.add_parser("merge", help="merge usage reports of separate runs")
    merge.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                       help="run directory holding usage-report.json (or the file)")
    merge.add_argument("--out", required=True, help="directory for the merged report")
    merge.add_argument("--commitment-file", help="YAML: service -> year -> purchased units")
    merge.add_argument("--warn-percent", type=float, default=80.0,
                       help="warn when a commitment's used share reaches it (80)")
    merge.set_defaults(func=cmd_report_merge)
    show = report_verbs.add_parser("show", help="summarise a usage report")
    show.add_argument("run_dir", help="directory holding usage-report.json (or the file)")
    show.set_defaults(func=cli_playbooks.cmd_report_show)
    cli_playbooks.add_verbs(verbs)
    cli_ca.add_verbs(verbs)

    demo = verbs.add_parser("demo", help="build the lab and run the main job on it")
    demo.add_argument("--hosts", type=int, default=3, help="podman hosts (3)")
    demo.add_argument("--docker-hosts", type=int, default=1,
                      help="docker hosts beside them (1)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("CONTAINERS_CONF", str(project_root() / "lab" / "containers.conf"))
    try:
        return args.func(args)
    except (lab.LabError, bundle.BundleError, usage.UsageError) as exc:
        print(f"airlift: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except podman.PodmanError as exc:
        print(f"airlift: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        # A path the verb could not use that no check above named: still one sentence.
        print(f"airlift: cannot use {exc.filename or 'a path given'} ({exc.strerror}): "
              "check the path given and its permissions", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
