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
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from airlift.paths import project_root

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_FAILED_HOSTS = 3
EXIT_UNREACHABLE_HOSTS = 4
# Task files whose failure means the inventory or the arguments are wrong, not a host
# (as does a failed role argument_specs validation).
BAD_INPUT_TASK_FILES = ("validate_inventory.yml", "plan.yml")
KEEP_ARTIFACTS = 10


@dataclass
class PlaybookRun:
    """What to run: the same options ansible-playbook takes, passed through."""

    playbook: str
    inventory: str | None = None
    limit: str | None = None
    check: bool = False
    forks: int | None = None
    extra_vars: Sequence[str] = ()
    vault_password_file: str | None = None
    vault_ids: Sequence[str] = ()
    run_id: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).strftime(
        "%Y%m%dT%H%M%SZ"))

    def cmdline(self) -> list[str]:
        args: list[str] = []
        if self.inventory:
            args += ["-i", self.inventory]
        if self.limit:
            args += ["--limit", self.limit]
        if self.check:
            args.append("--check")
        if self.forks:
            args += ["--forks", str(self.forks)]
        for extra in self.extra_vars:
            args += ["-e", extra]
        if self.vault_password_file:
            args += ["--vault-password-file", self.vault_password_file]
        for vault_id in self.vault_ids:
            args += ["--vault-id", vault_id]
        # Every report of this run lands in reports/<run_id>/.
        args += ["-e", f"airlift_run_id={self.run_id}"]
        return args

    def equivalent(self) -> str:
        return shlex.join(["ansible-playbook", *self.cmdline(), self.playbook])


@dataclass
class HostState:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    reason: str = ""

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        return "failed" if self.failed else "ok"


class Progress:
    """Folds ansible-runner events into counters and draws the progress line."""

    def __init__(self, hosts: Sequence[str], out: IO[str], live: bool) -> None:
        self.total = len(hosts)
        self.out, self.live = out, live
        # Every targeted host is listed, even one no event ever named.
        self.hosts: dict[str, HostState] = {name: HostState() for name in hosts}
        self.task = ""
        self.bytes_moved = 0
        self.bad_input = ""
        self.report_lines: list[str] = []

    def host(self, name: str) -> HostState:
        """A targeted host's state; plays on the controller (localhost) get a scratch one."""
        return self.hosts.get(name) or HostState()

    def handle(self, event: dict[str, Any]) -> bool:
        """ansible-runner's event_handler: update, redraw; True keeps the event."""
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        result = data.get("res") or {}
        host = data.get("host", "")
        if kind == "playbook_on_task_start":
            self.task = data.get("task", "")
            self.draw(new_task=True)
        elif kind == "runner_on_ok" and host:
            self.bytes_moved += int(result.get("transferred_bytes") or 0)
        elif kind == "runner_on_failed" and host and not data.get("ignore_errors"):
            state = self.host(host)
            state.failed = 1
            state.reason = state.reason or one_line(result.get("msg") or "failed")
            if data.get("task_action", "").endswith("validate_argument_spec") or any(
                    data.get("task_path", "").split(":")[0].endswith(name)
                    for name in BAD_INPUT_TASK_FILES):
                self.bad_input = state.reason
            self.draw()
        elif kind == "runner_on_unreachable" and host:
            state = self.host(host)
            state.unreachable = 1
            state.reason = one_line(result.get("msg") or "unreachable")
            self.draw()
        elif kind == "playbook_on_stats":
            self.stats(data)
        for line in (event.get("stdout") or "").splitlines():
            # The usage callback's closing lines say where the reports are.
            if line.startswith(("airlift usage:", "  report:")):
                self.report_lines.append(line)
        return True

    def stats(self, data: dict[str, Any]) -> None:
        for key, attr in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"),
                          ("dark", "unreachable")):
            for name, count in (data.get(key) or {}).items():
                setattr(self.host(name), attr, int(count))

    def counts(self) -> tuple[int, int, int]:
        states = [state.status for state in self.hosts.values()]
        return states.count("ok"), states.count("failed"), states.count("unreachable")

    def line(self) -> str:
        _, failed, unreachable = self.counts()
        moved = f" | {self.bytes_moved / 2**20:.1f} MiB moved" if self.bytes_moved else ""
        return (f"[{self.total} host(s): {failed} failed, {unreachable} unreachable{moved}] "
                f"{self.task}")

    def draw(self, new_task: bool = False) -> None:
        if self.live:
            width = shutil.get_terminal_size((100, 20)).columns
            self.out.write("\r\033[K" + self.line()[: width - 1])
            self.out.flush()
        elif new_task:
            self.out.write(self.line() + "\n")
            self.out.flush()

    def summary(self) -> list[str]:
        """The per-host table: every host seen, worst first."""
        if self.live:
            self.out.write("\r\033[K")
        order = {"unreachable": 0, "failed": 1, "ok": 2}
        rows = sorted(self.hosts.items(), key=lambda item: (order[item[1].status], item[0]))
        width = max([len(name) for name, _ in rows] + [4])
        lines = [f"{'host':<{width}}  {'status':<11}  {'ok':>4}  {'changed':>7}  reason"]
        for name, state in rows:
            lines.append(f"{name:<{width}}  {state.status:<11}  {state.ok:>4}  "
                         f"{state.changed:>7}  {state.reason}")
        ok, failed, unreachable = self.counts()
        lines.append(f"{ok} ok, {failed} failed, {unreachable} unreachable "
                     f"of {len(self.hosts)} host(s)")
        return lines


def one_line(text: Any, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def target_hosts(run: PlaybookRun, env: dict[str, str]) -> list[str]:
    """Hosts the run targets (after --limit); also proves the inventory parses."""
    args = ["ansible", "all", "--list-hosts"]
    # Ansible only warns about a missing inventory and runs on nothing: refuse instead.
    if run.inventory and "," not in run.inventory and not (
            project_root() / run.inventory).exists():
        raise ValueError(f"inventory {run.inventory} not found (give a path to a file or "
                         "folder, or a comma-separated host list)")
    if run.inventory:
        args += ["-i", run.inventory]
    if run.limit:
        args += ["--limit", run.limit]
    if run.vault_password_file:
        args += ["--vault-password-file", run.vault_password_file]
    for vault_id in run.vault_ids:
        args += ["--vault-id", vault_id]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=project_root(), env=env,
                          check=False)
    if proc.returncode != 0:
        raise ValueError(one_line(proc.stderr or proc.stdout, 400))
    return [line.strip() for line in proc.stdout.splitlines()[1:] if line.strip()]


def scrub_environment(command_file: Path) -> None:
    """ansible-runner records the whole environment of the run (AIRLIFT_API_KEY too) in
    its `command` artifact; keep the command and the variables' names only."""
    try:
        record = json.loads(command_file.read_text())
    except (OSError, ValueError):
        return
    if "env" not in record:
        return
    record["env_names"] = sorted(record.pop("env") or {})
    partial = command_file.with_suffix(".partial")
    partial.write_text(json.dumps(record))
    partial.chmod(0o600)
    partial.replace(command_file)


def scrubbing(handler: Callable[[dict[str, Any]], bool],
              command_file: Path) -> Callable[[dict[str, Any]], bool]:
    """Scrub the command artifact at the first event, when it has just been written."""
    done = False

    def handle(event: dict[str, Any]) -> bool:
        nonlocal done
        if not done:
            scrub_environment(command_file)
            done = True
        return handler(event)

    return handle


def rotate(reports: Path, keep: int = KEEP_ARTIFACTS) -> None:
    """Keep the runner artifacts of the newest runs only; reports themselves stay."""
    runs = sorted(path for path in reports.glob("*/runner") if path.is_dir())
    for old in runs[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(project_root() / "ansible.cfg"))
    env.setdefault("CONTAINERS_CONF", str(project_root() / "lab" / "containers.conf"))
    return env


def execute(run: PlaybookRun, out: IO[str] = sys.stdout,
            live: bool | None = None,
            runner: Callable[..., Any] | None = None) -> int:
    """Run the playbook; return one of the EXIT_* codes."""
    import ansible_runner

    live = out.isatty() if live is None else live
    env = environment()
    out.write(f"+ {run.equivalent()}\n")
    try:
        hosts = target_hosts(run, env)
    except ValueError as exc:
        out.write(f"airlift: the inventory does not parse: {exc}\n")
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
        envvars={**{key: env[key] for key in ("ANSIBLE_CONFIG", "CONTAINERS_CONF", "PATH")},
                 # ansible-runner sets this variable, which hides ansible.cfg's
                 # callback_plugins; it appends its own folder to what is given here.
                 "ANSIBLE_CALLBACK_PLUGINS": str(project_root() / "plugins" / "callback")},
        artifact_dir=str(artifacts), ident="events", quiet=True,
        suppress_env_files=True,
        event_handler=scrubbing(progress.handle, artifacts / "events" / "command"))
    shutil.rmtree(private, ignore_errors=True)
    scrub_environment(artifacts / "events" / "command")
    rotate(reports)
    for line in progress.summary():
        out.write(line + "\n")
    for line in progress.report_lines or usage_summary(reports / run.run_id):
        out.write(line + "\n")
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
    return usage.summary_lines(report, [str(path)], problems, service_problems)


def exit_code(progress: Progress, rc: int) -> int:
    _, failed, unreachable = progress.counts()
    # ansible-playbook exits 4 both for a parser error and for unreachable hosts.
    if progress.bad_input or rc == 5 or (rc == 4 and not unreachable):
        return EXIT_BAD_INPUT
    if failed:
        return EXIT_FAILED_HOSTS
    if unreachable:
        return EXIT_UNREACHABLE_HOSTS
    return EXIT_OK if rc == 0 else EXIT_ERROR
