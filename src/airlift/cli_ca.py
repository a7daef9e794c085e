"""`airlift ca ...`: the offline certificate authority for the front door (airlift.ca).

Only paths are printed, never a key.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from airlift import ca

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def _run(action: Callable[[], None]) -> int:
    try:
        action()
    except ca.CAError as exc:
        print(f"airlift: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def cmd_ca_init(args: argparse.Namespace) -> int:
    def action() -> None:
        existed = (Path(args.dir) / ca.CA_CERT).exists()
        key, cert = ca.init(Path(args.dir), common_name=args.common_name, days=args.days)
        print(f"CA {'kept' if existed else 'made'}: certificate {cert} (give it to clients), "
              f"key {key} (0600, stays on this machine)")
    return _run(action)


def cmd_ca_issue_server(args: argparse.Namespace) -> int:
    def action() -> None:
        issued = ca.issue_server(Path(args.dir), args.host, args.name or [], days=args.days,
                                 renew_days=args.renew_days, force=args.force)
        state = "issued" if issued.issued else "kept (valid, names unchanged)"
        print(f"{args.host}: server certificate {state}: {issued.cert}, key {issued.key} "
              "(0600, for this host only)")
    return _run(action)


def cmd_ca_issue_client(args: argparse.Namespace) -> int:
    def action() -> None:
        issued = ca.issue_client(Path(args.dir), args.name, days=args.days,
                                 renew_days=args.renew_days, force=args.force)
        state = "issued" if issued.issued else "kept (still valid)"
        print(f"client {args.name}: certificate {state}: {issued.cert}, key {issued.key} "
              "(0600, hand it to that caller only)")
    return _run(action)


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    """Add `airlift ca {init,issue-server,issue-client}` to the top-level verbs."""
    parser = verbs.add_parser("ca", help="offline certificate authority for the front door")
    ca_verbs = parser.add_subparsers(dest="ca_verb", required=True)
    init = ca_verbs.add_parser("init", help="make the CA key and certificate (once)")
    init.add_argument("--dir", required=True, help="CA directory (keep it on the controller)")
    init.add_argument("--common-name", default="airlift offline CA")
    init.add_argument("--days", type=int, default=ca.DEFAULT_CA_DAYS)
    init.set_defaults(func=cmd_ca_init)
    for verb, func, help_text in (
            ("issue-server", cmd_ca_issue_server, "a host's key and server certificate"),
            ("issue-client", cmd_ca_issue_client, "a caller's key and client certificate")):
        sub = ca_verbs.add_parser(verb, help=help_text + " (kept while valid)")
        sub.add_argument("--dir", required=True, help="CA directory")
        if verb == "issue-server":
            sub.add_argument("--host", required=True, help="inventory hostname")
            sub.add_argument("--name", action="append",
                             help="DNS name or IP address clients use (repeat; default: host)")
        else:
            sub.add_argument("--name", required=True, help="the caller's name (CN)")
        sub.add_argument("--days", type=int, default=ca.DEFAULT_DAYS)
        sub.add_argument("--renew-days", type=int, default=ca.DEFAULT_RENEW_DAYS,
                         help="re-issue when it expires within this many days")
        sub.add_argument("--force", action="store_true", help="issue even if still valid")
        sub.set_defaults(func=func)
