# Apache-2.0
"""Stream every host's `airlift_usage` result into the fleet usage report."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: airlift_usage
type: aggregate
short_description: Fleet usage report (JSON, CSV, HTML) from the hosts' airlift_usage results
description:
  - Collects the C(airlift_usage) return value each host's collection task produces
    (schema 1) as it arrives, appending it to a spool file and keeping only fleet counters
    in memory, and writes C(usage-report.json), C(usage-report.csv) and
    C(usage-report.html) at the end of the run, then prints a short summary.
  - Every host of a play that produced usage results, or that is marked as a usage
    collection, appears in the report, after C(--limit), as C(reported), C(failed) (with
    the failure message) or C(unreachable); a host without numbers is never counted as zero.
  - A top-level C(airlift_usage_collection) result or fact (a mapping, optionally with
    C(run_dir)) marks its play as a usage collection; the C(airlift_collect) role sets it
    before it contacts any host. Such a play always gets a report, even when no host
    returned usage (every host unreachable or failed), written to that C(run_dir).
  - A top-level C(airlift_usage_commitments) result (service -> year -> purchased units)
    adds commitment plans; the report shows the share used, a linear projection to the
    end of the year, and a warning past O(warn_percent).
  - A run that produced no C(airlift_usage) result and no collection marker writes
    nothing, so the callback can stay enabled for every playbook. Only the documented
    usage fields are kept; failure messages are redacted of key-looking values; whole
    results are never stored.
requirements:
  - the airlift package importable by the Python running Ansible (the project venv)
  - enabled with C(callbacks_enabled = airlift_usage) or C(ANSIBLE_CALLBACKS_ENABLED)
options:
  report_dir:
    description:
      - Parent directory of the reports when the results carry no C(run_dir); the
        report goes to C(<report_dir>/<UTC timestamp>).
    type: path
    default: reports
    env:
      - name: AIRLIFT_USAGE_REPORT_DIR
    ini:
      - section: callback_airlift_usage
        key: report_dir
  formats:
    description: Report files to write.
    type: list
    elements: str
    choices: [json, csv, html]
    default: [json, csv, html]
    env:
      - name: AIRLIFT_USAGE_FORMATS
    ini:
      - section: callback_airlift_usage
        key: formats
  commitment_file:
    description:
      - Optional YAML file of commitment plans, the shape of C(airlift_usage_commitments)
        (service, then calendar year, then purchased units). Results of the run override
        it per service and year.
    type: path
    env:
      - name: AIRLIFT_USAGE_COMMITMENT_FILE
    ini:
      - section: callback_airlift_usage
        key: commitment_file
  site_group_pattern:
    description:
      - Inventory groups whose names match this shell-style pattern are sites. Each
        host's first matching group (sorted by name) is its C(site) in the report, and
        the HTML page groups its figures per site. Hosts in no such group have no
        C(site); an empty pattern turns the grouping off.
    type: str
    default: site_*
    env:
      - name: AIRLIFT_USAGE_SITE_GROUP_PATTERN
    ini:
      - section: callback_airlift_usage
        key: site_group_pattern
  warn_percent:
    description: Warn when a commitment plan's used share reaches this percentage.
    type: float
    default: 80
    env:
      - name: AIRLIFT_USAGE_WARN_PERCENT
    ini:
      - section: callback_airlift_usage
        key: warn_percent
author:
  - airlift developers
"""

import datetime as dt
import fnmatch
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ansible.plugins.callback import CallbackBase

from airlift.usage import FAILED, UNREACHABLE, UsageAggregator, UsageError
from airlift.usage_report import load_commitment_file, text_summary, write_reports


class AnsibleView:
    """The one place that reaches into Ansible's objects, so an API change lands here."""

    @staticmethod
    def host(result: Any) -> str:
        host = getattr(result, "host", None) or result._host
        return str(host.get_name())

    @staticmethod
    def payloads(result: Any) -> Iterator[Mapping[str, Any]]:
        """The result's return value, the facts it sets, and each loop item's (read, never
        kept): a module can return `airlift_usage`, or a play can set it as a fact."""
        data = getattr(result, "result", None)
        if data is None:
            data = result._result
        if not isinstance(data, Mapping):
            return
        for item in (data, *(data.get("results") or ())):
            if isinstance(item, Mapping):
                yield item
                if isinstance(item.get("ansible_facts"), Mapping):
                    yield item["ansible_facts"]

    @classmethod
    def message(cls, result: Any) -> str:
        """Why a task failed: its name and msg, or a placeholder when output is hidden."""
        task = getattr(result, "task", None) or result._task
        name = task.get_name() if task is not None else "task"
        data = next(cls.payloads(result), {})
        if data.get("_ansible_no_log") or data.get("censored") or getattr(task, "no_log", False):
            return f"{name}: failed (output hidden by no_log)"
        detail = data.get("msg") or data.get("stderr") or data.get("reason") or "failed"
        return f"{name}: {detail}"

    @staticmethod
    def play_hosts(play: Any, site_pattern: str = "") -> dict[str, str | None]:
        """Hosts of the play after --limit (all serial batches, not just the current one),
        each with its first group matching SITE_PATTERN (its site), if any."""
        inventory = play.get_variable_manager()._inventory
        hosts: dict[str, str | None] = {}
        for host in inventory.get_hosts(play.hosts, ignore_restrictions=True):
            groups = sorted(group.get_name() for group in host.get_groups()) \
                if site_pattern else []
            hosts[host.get_name()] = next(
                (name for name in groups if fnmatch.fnmatchcase(name, site_pattern)), None)
        return hosts

    @staticmethod
    def inventory_sources(play: Any) -> list[str]:
        """Where the inventory came from, named on the report."""
        sources = getattr(play.get_variable_manager()._inventory, "_sources", None) or []
        return [str(source) for source in sources]

    @staticmethod
    def playbook_name(playbook: Any) -> str:
        return Path(getattr(playbook, "_file_name", "") or "").name


class CallbackModule(CallbackBase):
    """Aggregate usage results host by host; write the reports at the end of the run."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "airlift_usage"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._usage: UsageAggregator | None = None
        self._playbook = ""
        self._play: Any = None
        self._inventory: list[str] = []
        self._play_has_usage = False
        self._commitments: list[Mapping[str, Any]] = []

    @property
    def _agg(self) -> UsageAggregator:
        if self._usage is None:
            self._usage = UsageAggregator(warn_percent=float(self.get_option("warn_percent")))
        return self._usage

    def _end_play(self) -> None:
        """A play's hosts become expected once any of them returned usage or the play was
        marked as a collection."""
        if self._play_has_usage and self._play is not None:
            # Listed only for plays that collect: every other play of every playbook
            # passes through this callback too.
            hosts = AnsibleView.play_hosts(self._play, self.get_option("site_group_pattern"))
            self._agg.expect(hosts)
            for host, site in hosts.items():
                self._agg.set_site(host, site)
        self._play, self._play_has_usage = None, False

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._playbook = AnsibleView.playbook_name(playbook)

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._end_play()
        self._play = play
        self._inventory = self._inventory or AnsibleView.inventory_sources(play)

    def v2_runner_on_ok(self, result: Any) -> None:
        for data in AnsibleView.payloads(result):
            marker = data.get("airlift_usage_collection")
            if isinstance(marker, Mapping):
                self._agg.collection_ran(marker.get("run_dir"))
                self._play_has_usage = True
            usage = data.get("airlift_usage")
            if isinstance(usage, Mapping):
                self._agg.add_usage(AnsibleView.host(result), usage)
                self._play_has_usage = True
            commitments = data.get("airlift_usage_commitments")
            if commitments is not None:
                self._commitments.append(commitments)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            self._agg.mark(AnsibleView.host(result), FAILED, AnsibleView.message(result))

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._agg.mark(AnsibleView.host(result), UNREACHABLE, AnsibleView.message(result))

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._end_play()
        agg = self._usage
        if agg is None or not agg.report_due:
            if agg is not None:
                agg.close()
            return
        try:
            self._add_commitments(agg)
            now = dt.datetime.now(dt.UTC)
            dest = (Path(agg.run_dir) if agg.run_dir else
                    Path(self.get_option("report_dir")) / now.strftime("%Y%m%dT%H%M%SZ"))
            header, paths = write_reports(agg, dest, self.get_option("formats"),
                                          run={"playbook": self._playbook,
                                               "inventory": self._inventory}, generated=now)
            for line in text_summary(agg, header, paths):
                self._display.display(line)
        except (OSError, UsageError) as exc:
            self._display.warning(f"airlift_usage: no usage report written: {exc}")
        finally:
            agg.close()

    def _add_commitments(self, agg: UsageAggregator) -> None:
        """The commitment file first, then what the run returned (it overrides)."""
        path = self.get_option("commitment_file")
        sources: list[tuple[object, str]] = [(None, path)] if path else []
        sources += [(raw, "airlift_usage_commitments") for raw in self._commitments]
        for raw, source in sources:
            try:
                agg.add_commitments(load_commitment_file(source) if raw is None else raw, source)
            except UsageError as exc:
                agg.warnings.append(str(exc))
