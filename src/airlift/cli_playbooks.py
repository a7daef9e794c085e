"""The airlift verbs that run playbooks (through ansible-runner) and read reports.

Each verb is one playbook; the options are ansible-playbook's, passed through, and the
equivalent ansible-playbook line is printed before the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from airlift import runner, usage

PLAYBOOK_VERBS = {
    "stage": ("playbooks/stage.yml", "connected side: images and licenses into a signed bundle"),
    "certificates": ("playbooks/certificates.yml",
                     "front door: the CA once, then issue or renew each host's certificate"),
    "preflight": ("playbooks/preflight.yml", "check every host against its containers"),
    "rollout": ("site.yml", "preflight, distribute, deploy and verify (site.yml)"),
    "health": ("playbooks/verify.yml", "every service runs as deployed? (reads only)"),
    "collect": ("playbooks/collect_usage.yml", "collect usage and the raw records"),
    "rotate": ("playbooks/rotate.yml", "new images and licenses host by host, with rollback"),
}
# Verbs whose playbook runs on the controller only: their run targets `localhost`.
CONTROLLER_VERBS = {"stage"}


def add_playbook_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--inventory", help="inventory (default: ansible.cfg's)")
    parser.add_argument("-l", "--limit", help="only these hosts or groups")
    parser.add_argument("-C", "--check", action="store_true", help="change nothing")
    parser.add_argument("-D", "--diff", action="store_true", help="show what changes")
    parser.add_argument("-f", "--forks", type=int, help="parallel hosts")
    parser.add_argument("-e", "--extra-vars", action="append", default=[],
                        help="extra variables (key=value, JSON or @file), repeatable")
    parser.add_argument("--vault-password-file", help="file holding the vault password")
    parser.add_argument("--vault-id", action="append", default=[], help="vault identity")


def cmd_playbook(args: argparse.Namespace) -> int:
    run = runner.PlaybookRun(
        playbook=args.playbook, inventory=args.inventory, limit=args.limit, check=args.check,
        diff=args.diff, forks=args.forks, pattern=args.pattern, extra_vars=args.extra_vars,
        vault_password_file=args.vault_password_file, vault_ids=args.vault_id)
    return runner.execute(run)


def cmd_report_show(args: argparse.Namespace) -> int:
    path = Path(args.run_dir)
    lines = runner.usage_summary(path.parent.parent if path.is_file() else
                                 path.parent if path.name == "usage" else path)
    if not lines:
        raise usage.UsageError(f"no usage-report.json in {path} (give a run folder, its "
                               "usage folder, or the file)")
    print("\n".join(lines))
    return runner.EXIT_OK


def add_verbs(verbs: Any) -> None:
    """Register the playbook verbs on the main parser's subparsers."""
    for verb, (playbook, summary) in PLAYBOOK_VERBS.items():
        parser = verbs.add_parser(verb, help=summary)
        add_playbook_options(parser)
        parser.set_defaults(func=cmd_playbook, playbook=playbook,
                            pattern="localhost" if verb in CONTROLLER_VERBS else "all")
