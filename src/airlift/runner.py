"""Run a playbook through ansible-runner with live progress and a per-host summary.

The operator sees the equivalent `ansible-playbook` line first, then one progress line
(rewritten in place on a terminal, one line per task when piped), then a table of hosts
and an exit code a script can rely on. Ansible's own output is kept, with every event,
in the run's artifacts (`reports/<run>/runner/`), which are rotated.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from airlift.paths import project_root

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_FAILED_HOSTS = 3
EXIT_UNREACHABLE_HOSTS = 4
# Task files whose failure means the inventory or the arguments are wrong, not a host
# (as does a failed role argument_specs validation).
BAD_INPUT_TASK_FILES = ("validate_inventory.yml", "plan.yml")
# Actions that validate settings (Ansible's per host, or airlift's for every host at once).
BAD_INPUT_ACTIONS = ("validate_argument_spec", "airlift_fleet_arguments",
                     "airlift_fleet_checks")
KEEP_ARTIFACTS = 10
# Extra variables whose names look like these hold secrets: their values are redacted from
# the printed command line and from the runner's `command` artifact.
SECRET_NAME = re.compile(r"api_?key|password|passwd|passphrase|secret|token|credential",
                         re.IGNORECASE)
REDACTED = "<redacted>"
KEY_VALUE = re.compile(r"""(?P<key>[^\s=]+)=(?P<value>"(?:\\.|[^"\\])*"|'[^']*'|\S*)""")
# Set for the host listing and the run: Ansible only warns about an inventory source that
# does not parse, then runs on no host, or on the part that did parse, and exits 0.
FORCED_ENV = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
              "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True"}
# What the run gets from `environment()` (ansible-runner adds the rest of os.environ).
PASSED_ENV = ("ANSIBLE_CONFIG", "CONTAINERS_CONF", "PATH", "ANSIBLE_HOST_KEY_CHECKING",
              *FORCED_ENV)


@dataclass
class PlaybookRun:
    """What to run: the same options ansible-playbook takes, passed through.

    `pattern` is the host pattern the playbook's plays target, used to list the run's
    hosts: `localhost` for a playbook that runs on the controller only (stage.yml), so
    that its summary is about the controller, not about inventory hosts it never touches.
    """

    playbook: str
    inventory: str | None = None
    limit: str | None = None
    check: bool = False
    diff: bool = False
    forks: int | None = None
    extra_vars: Sequence[str] = ()
    vault_password_file: str | None = None
    vault_ids: Sequence[str] = ()
    pattern: str = "all"
    run_id: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).strftime(
        "%Y%m%dT%H%M%SZ"))

    def cmdline(self, redact: bool = False) -> list[str]:
        """ansible-playbook's options; `redact` hides secret-looking extra variables."""
        args: list[str] = []
        if self.inventory:
            args += ["-i", self.inventory]
        if self.limit:
            args += ["--limit", self.limit]
        if self.check:
            args.append("--check")
        if self.diff:
            args.append("--diff")
        if self.forks:
            args += ["--forks", str(self.forks)]
        for extra in self.extra_vars:
            args += ["-e", redact_extra_vars(extra) if redact else extra]
        if self.vault_password_file:
            args += ["--vault-password-file", self.vault_password_file]
        for vault_id in self.vault_ids:
            args += ["--vault-id", vault_id]
        # Every report of this run lands in reports/<run_id>/.
        args += ["-e", f"airlift_run_id={self.run_id}"]
        return args

    def equivalent(self) -> str:
        """The line printed before the run, to be read or copied: an extra variable that
        looks secret shows as <redacted> (put the value back, or use a vaulted file)."""
        return shlex.join(["ansible-playbook", *self.cmdline(redact=True), self.playbook])


def redact_extra_vars(text: str) -> str:
    """One -e argument with the values of secret-looking variables replaced.

    `key=value` pairs whose key or value names a secret are redacted in place; JSON or
    YAML (Ansible reads an argument that starts with `{` or `[` so) is printed back as
    JSON, redacted at any depth; `@file` is kept (its content is not on the command
    line). An argument that names a secret outside of these forms is hidden whole:
    Ansible refuses it anyway. Only what is shown and recorded is redacted, not the run.
    """
    if text.startswith("@") or not SECRET_NAME.search(text):
        return text
    if text[:1] in ("{", "["):
        try:
            return json.dumps(redact_values(yaml.safe_load(text)), default=str)
        except yaml.YAMLError:
            return REDACTED
    if SECRET_NAME.search(KEY_VALUE.sub("", text)):
        return REDACTED
    return KEY_VALUE.sub(lambda match: f"{match['key']}={REDACTED}"
                         if SECRET_NAME.search(match[0]) else match[0], text)


def redact_values(value: Any) -> Any:
    """The value with every entry whose key looks secret replaced, at any depth."""
    if isinstance(value, dict):
        return {key: REDACTED if SECRET_NAME.search(str(key)) else redact_values(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [redact_values(item) for item in value]
    return value


def redact_command(command: list[str]) -> list[str]:
    """A recorded command line with every -e argument redacted."""
    return [redact_extra_vars(arg) if before in ("-e", "--extra-vars") else arg
            for before, arg in zip(["", *command], command, strict=False)]


@dataclass
class HostState:
    """One host's row in the summary: counts from the closing stats, the first reason."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    reason: str = ""
    ran: bool = False   # an event or the closing stats named the host

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "ok" if self.ran else "not run"


STATUS_ORDER = {"unreachable": 0, "failed": 1, "not run": 2, "ok": 3}
# Events that end a task on a host without failing it.
TASK_DONE_EVENTS = ("runner_on_ok", "runner_on_skipped")
REDRAW_SECONDS = 0.1


class Progress:
    """Folds ansible-runner events into counters and draws the progress line.

    The line reads `[D done, F failed, U unreachable of N] task`: D is how many hosts
    have finished the current task (ok, changed, skipped or failed with ignore_errors),
    F and U how many have failed or been unreachable so far in the run, N the hosts the
    summary lists (see `table`). Hosts outside the current batch or play, or still at
    work, are the rest. A task that runs on the controller only (localhost) shows 0 done.
    On a terminal the line is redrawn as results come in; piped, one line is printed per
    task when it ends, so its counts are final.
    """

    def __init__(self, hosts: Sequence[str], out: IO[str], live: bool) -> None:
        self.out, self.live = out, live
        # Every targeted host is listed, even one no event ever named ("not run").
        self.hosts: dict[str, HostState] = {name: HostState() for name in hosts}
        # Hosts outside the targeted ones that events name: the controller (localhost).
        self.others: dict[str, HostState] = {}
        self.targeted_ran = False
        self.task = ""
        self.task_done: set[str] = set()
        self.task_printed = True
        self.drawn_at = 0.0
        self.bytes_moved = 0
        self.bad_input = ""
        self.report_lines: list[str] = []

    def host(self, name: str) -> HostState:
        """A host's state; one outside the targeted hosts is kept apart (see `table`)."""
        if name in self.hosts:
            return self.hosts[name]
        return self.others.setdefault(name, HostState())

    def ran(self, name: str) -> HostState:
        """A host's state, marked as having run: an event or the stats named it."""
        state = self.host(name)
        state.ran = True
        self.targeted_ran = self.targeted_ran or name in self.hosts
        return state

    def handle(self, event: dict[str, Any]) -> bool:
        """ansible-runner's event_handler: update, redraw; True keeps the event."""
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        result = data.get("res") or {}
        host = data.get("host", "")
        if kind in ("playbook_on_task_start", "playbook_on_handler_task_start"):
            self.end_task()
            self.task, self.task_done, self.task_printed = data.get("task", ""), set(), False
            self.draw(force=True)
        elif kind.startswith(("runner_on_", "runner_item_on_")) and host:
            self.host_event(kind, host, data, result)
            if kind == "runner_on_ok":
                # Lines an action wants the operator to read (stage: what would be
                # pulled, which tag moved).
                self.report_lines.extend(str(line) for line in
                                         result.get("airlift_lines") or [])
        elif kind == "playbook_on_stats":
            self.end_task()
            self.stats(data)
        for line in (event.get("stdout") or "").splitlines():
            # The usage callback's closing lines say where the reports are.
            if line.startswith(("airlift usage:", "  report:", "  open in a browser:")):
                self.report_lines.append(line)
        return True

    def host_event(self, kind: str, host: str, data: dict[str, Any],
                   result: dict[str, Any]) -> None:
        state = self.ran(host)
        if kind in TASK_DONE_EVENTS or (kind == "runner_on_failed"
                                        and data.get("ignore_errors")):
            self.task_done.add(host)
            self.bytes_moved += int(result.get("transferred_bytes") or 0)
        elif kind == "runner_on_failed":
            state.failed = 1
            state.reason = state.reason or one_line(result.get("msg") or "failed")
            if data.get("task_action", "").endswith(BAD_INPUT_ACTIONS) or any(
                    data.get("task_path", "").split(":")[0].endswith(name)
                    for name in BAD_INPUT_TASK_FILES):
                self.bad_input = state.reason
        elif kind == "runner_on_unreachable":
            state.unreachable = 1
            state.reason = one_line(result.get("msg") or "unreachable")
        else:
            return
        self.draw(force=kind not in TASK_DONE_EVENTS)

    def stats(self, data: dict[str, Any]) -> None:
        for name in data.get("processed") or {}:
            self.ran(name)
        for key, attr in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"),
                          ("dark", "unreachable")):
            for name, count in (data.get(key) or {}).items():
                setattr(self.ran(name), attr, int(count))

    def table(self) -> dict[str, HostState]:
        """The hosts the summary lists and the progress line counts.

        Once a targeted host has run: every targeted host (one no event named is "not
        run": the run stopped before it), and a host outside them (the controller, which
        preflight also plays on) only when it failed. Before that, or when none ever
        runs (a controller-only playbook given the inventory's hosts): the hosts that
        did run, so that a failure on the controller is shown with its reason, or else
        the targeted hosts, all "not run".
        """
        if self.targeted_ran:
            return {**self.hosts, **{name: state for name, state in self.others.items()
                                     if state.status in ("failed", "unreachable")}}
        return dict(self.others) or dict(self.hosts)

    def counts(self, table: dict[str, HostState] | None = None) -> dict[str, int]:
        """Hosts of the table per status."""
        counts = dict.fromkeys(STATUS_ORDER, 0)
        for state in (self.table() if table is None else table).values():
            counts[state.status] += 1
        return counts

    def line(self) -> str:
        table = self.table()
        counts = self.counts(table)
        done = len(self.task_done & table.keys())
        moved = f" | {self.bytes_moved / 2**20:.1f} MiB moved" if self.bytes_moved else ""
        return (f"[{done} done, {counts['failed']} failed, {counts['unreachable']} "
                f"unreachable of {len(table)}{moved}] {self.task}")

    def draw(self, force: bool = False) -> None:
        """Redraw the terminal's line (at most every REDRAW_SECONDS unless forced)."""
        if not self.live:
            return
        now = time.monotonic()
        if force or now - self.drawn_at >= REDRAW_SECONDS:
            self.drawn_at = now
            width = shutil.get_terminal_size((100, 20)).columns
            self.out.write("\r\033[K" + self.line()[: width - 1])
            self.out.flush()

    def end_task(self) -> None:
        """Piped: the line of the task that just ended, once."""
        if not self.live and self.task and not self.task_printed:
            self.task_printed = True
            self.out.write(self.line() + "\n")
            self.out.flush()

    def summary(self) -> list[str]:
        """The per-host table (see `table`), worst first."""
        self.end_task()
        if self.live:
            self.out.write("\r\033[K")
        table = self.table()
        rows = sorted(table.items(), key=lambda item: (STATUS_ORDER[item[1].status], item[0]))
        width = max([len(name) for name, _ in rows] + [4])
        lines = [f"{'host':<{width}}  {'status':<11}  {'ok':>4}  {'changed':>7}  reason"]
        for name, state in rows:
            lines.append(f"{name:<{width}}  {state.status:<11}  {state.ok:>4}  "
                         f"{state.changed:>7}  {state.reason}")
        counts = self.counts(table)
        not_run = f", {counts['not run']} not run" if counts["not run"] else ""
        lines.append(f"{counts['ok']} ok, {counts['failed']} failed, {counts['unreachable']} "
                     f"unreachable{not_run} of {len(table)} host(s)")
        if self.hosts and not self.targeted_ran and self.others:
            lines.append(f"no task ran on the {len(self.hosts)} targeted host(s) of the "
                         "inventory")
        return lines


def one_line(text: Any, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def check_files(run: PlaybookRun) -> None:
    """Refuse, naming the fix, a file the run is given that is not there.

    Ansible would otherwise stop on the first with its own words (a missing vault password
    file reads as an inventory that does not parse). Relative paths are taken from the
    project root, where the run starts, as the inventory's are.
    """
    given = [(extra[1:], "extra variables file (-e @FILE)", "a YAML or JSON file of variables")
             for extra in run.extra_vars if extra.startswith("@")]
    if run.vault_password_file:
        given.append((run.vault_password_file, "vault password file",
                      "the file holding the vault password"))
    for vault_id in run.vault_ids:
        # ID@SOURCE or SOURCE; "prompt" asks on the terminal, anything else is a file.
        label, _, source = vault_id.partition("@") if "@" in vault_id else ("", "", vault_id)
        if source != "prompt":
            given.append((source, f"vault password file (--vault-id {label or 'default'})",
                          "the file (or script) holding that vault's password"))
    for path, what, fix in given:
        if not (project_root() / path).is_file():
            raise ValueError(f"{what} {path} not found: give {fix} (a relative path is taken "
                             f"from {project_root()})")


def target_hosts(run: PlaybookRun, env: dict[str, str]) -> list[str]:
    """Hosts the run targets (its pattern, after --limit); also proves the inventory parses.

    Raises ValueError, saying what to fix, when the inventory is missing or does not
    parse, or when no host is left to run on: Ansible would run on nothing and exit 0.
    """
    name = run.inventory or "of ansible.cfg"
    # Ansible only warns about a missing inventory and runs on nothing: refuse instead.
    if run.inventory and "," not in run.inventory and not (
            project_root() / run.inventory).exists():
        raise ValueError(f"inventory {run.inventory} not found (give a path to a file or "
                         "folder, or a comma-separated host list)")
    inventory = ["-i", run.inventory] if run.inventory else []
    args = ["ansible", run.pattern, "--list-hosts", *inventory]
    if run.limit:
        args += ["--limit", run.limit]
    if run.vault_password_file:
        args += ["--vault-password-file", run.vault_password_file]
    for vault_id in run.vault_ids:
        args += ["--vault-id", vault_id]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=project_root(),
                          env={**env, **FORCED_ENV}, check=False)
    hosts = [line.strip() for line in proc.stdout.splitlines()[1:] if line.strip()]
    # With --limit, Ansible fails ("no hosts to target") when nothing matches.
    if proc.returncode != 0 and not (run.limit and "no hosts" in proc.stderr):
        # Ansible's error (which names the source) first, then its warnings' details.
        lines = (proc.stderr or proc.stdout).splitlines()
        errors = [line for line in lines if line.startswith("[ERROR]")]
        raise ValueError(f"the inventory {name} does not parse: "
                         f"{one_line(' '.join(errors + lines), 400)}")
    if proc.returncode != 0 or not hosts:
        graph = shlex.join(["ansible-inventory", *inventory, "--graph"])
        if run.limit:
            raise ValueError(f"--limit {run.limit} matches no host of the inventory {name}: "
                             f"see its hosts and groups with `{graph}`")
        raise ValueError(f"the inventory {name} has no host for `{run.pattern}`: add hosts "
                         f"(see them with `{graph}`) or give another with -i")
    return hosts


def scrub_command(command_file: Path) -> None:
    """ansible-runner records the whole environment of the run (AIRLIFT_API_KEY too) and
    the command line (secrets given with -e too) in its `command` artifact: keep the
    variables' names only, and the command with secret-looking extra variables redacted."""
    try:
        record = json.loads(command_file.read_text())
    except (OSError, ValueError):
        return
    scrubbed = dict(record)
    if isinstance(record.get("command"), list):
        scrubbed["command"] = redact_command(record["command"])
    if "env" in record:
        scrubbed["env_names"] = sorted(scrubbed.pop("env") or {})
    if scrubbed == record:
        return
    partial = command_file.with_suffix(".partial")
    partial.write_text(json.dumps(scrubbed))
    partial.chmod(0o600)
    partial.replace(command_file)


def scrubbing(handler: Callable[[dict[str, Any]], bool],
              command_file: Path) -> Callable[[dict[str, Any]], bool]:
    """Scrub the command artifact at the first event, when it has just been written."""
    done = False

    def handle(event: dict[str, Any]) -> bool:
        nonlocal done
        if not done:
            scrub_command(command_file)
            done = True
        return handler(event)

    return handle


def rotate(reports: Path, keep: int = KEEP_ARTIFACTS) -> None:
    """Keep the runner artifacts of the newest runs only; reports themselves stay."""
    runs = sorted(path for path in reports.glob("*/runner") if path.is_dir())
    for old in runs[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def with_own_bin(env: dict[str, str]) -> dict[str, str]:
    """ENV with this interpreter's folder first on PATH.

    Ansible is installed beside the interpreter running airlift (the venv's bin), which
    is on PATH only when the venv is activated: `.venv/bin/airlift` alone must still find
    `ansible` and `ansible-playbook`, and the very ones of its own venv. The folder is
    taken as given, not resolved: a venv's python is a link to the system's.
    """
    own = os.path.dirname(os.path.abspath(sys.executable))
    parts = [part for part in env.get("PATH", os.defpath).split(os.pathsep) if part]
    return {**env, "PATH": os.pathsep.join([own, *(part for part in parts if part != own)])}


def environment() -> dict[str, str]:
    """The run's environment: the operator's, with the settings airlift relies on.

    Host key checking stays on unless ANSIBLE_HOST_KEY_CHECKING says otherwise:
    ansible-runner would turn it off, and the printed ansible-playbook line checks.
    """
    env = with_own_bin(dict(os.environ))
    env.setdefault("ANSIBLE_CONFIG", str(project_root() / "ansible.cfg"))
    env.setdefault("CONTAINERS_CONF", str(project_root() / "lab" / "containers.conf"))
    env.setdefault("ANSIBLE_HOST_KEY_CHECKING", "True")
    return {**env, **FORCED_ENV}


def execute(run: PlaybookRun, out: IO[str] | None = None,
            live: bool | None = None,
            runner: Callable[..., Any] | None = None) -> int:
    """Run the playbook; return one of the EXIT_* codes. `out` is sys.stdout at call time."""
    import ansible_runner

    out = out or sys.stdout
    live = out.isatty() if live is None else live
    env = environment()
    out.write(f"+ {run.equivalent()}\n")
    try:
        check_files(run)
        hosts = target_hosts(run, env)
    except ValueError as exc:
        out.write(f"airlift: {exc}\n")
        return EXIT_BAD_INPUT
    reports = project_root() / "reports"
    artifacts = reports / run.run_id / "runner"
    artifacts.mkdir(parents=True, exist_ok=True)
    progress = Progress(hosts, out, live)
    private = artifacts / "private"
    private.mkdir(exist_ok=True)
    result = (runner or ansible_runner.run)(
        private_data_dir=str(private), project_dir=str(project_root()),
        playbook=str(project_root() / run.playbook), cmdline=shlex.join(run.cmdline()),
        envvars={**{key: env[key] for key in PASSED_ENV},
                 # ansible-runner sets this variable, which hides ansible.cfg's
                 # callback_plugins; it appends its own folder to what is given here.
                 "ANSIBLE_CALLBACK_PLUGINS": str(project_root() / "plugins" / "callback")},
        artifact_dir=str(artifacts), ident="events", quiet=True,
        suppress_env_files=True,
        event_handler=scrubbing(progress.handle, artifacts / "events" / "command"))
    shutil.rmtree(private, ignore_errors=True)
    scrub_command(artifacts / "events" / "command")
    rotate(reports)
    for line in progress.summary():
        out.write(line + "\n")
    for line in progress.report_lines or usage_summary(reports / run.run_id):
        out.write(line + "\n")
    page = reports / run.run_id / "preflight" / "compliance.html"
    if page.exists():
        out.write(f"compliance report, open in a browser: {page}\n")
    out.write(f"artifacts (events, Ansible's output): {artifacts / 'events'}\n")
    return exit_code(progress, int(result.rc or 0))


def usage_summary(run_dir: Path) -> list[str]:
    """The usage callback's closing lines, read back from the report it wrote.

    Under ansible-runner the callback's own display at the end of the run is not
    captured as an event, so the command reads the report instead.
    """
    from airlift import usage, usage_report

    path = run_dir / "usage" / "usage-report.json"
    if not path.exists():
        return []
    report = usage_report.read_report(path)
    hosts = report.get("hosts") or []
    problems = [(host["host"], host["status"], host.get("reason", ""))
                for host in hosts if host["status"] != "reported"]
    service_problems = [(host["host"], service["name"], service["error"])
                        for host in hosts if host["status"] == "reported"
                        for service in host.get("services") or [] if "error" in service]
    page = path.with_name("usage-report.html")
    paths = [str(path), *([str(page)] if page.exists() else [])]
    return usage.summary_lines(report, paths, problems, service_problems)


def exit_code(progress: Progress, rc: int) -> int:
    counts = progress.counts()
    failed, unreachable = counts["failed"], counts["unreachable"]
    # ansible-playbook exits 4 both for a parser error and for unreachable hosts.
    if progress.bad_input or rc == 5 or (rc == 4 and not unreachable):
        return EXIT_BAD_INPUT
    if failed:
        return EXIT_FAILED_HOSTS
    if unreachable:
        return EXIT_UNREACHABLE_HOSTS
    return EXIT_OK if rc == 0 else EXIT_ERROR
