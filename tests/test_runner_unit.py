"""The airlift command's run view: progress, summary and exit codes from runner events."""

from __future__ import annotations

import io

from airlift import runner


def event(kind: str, host: str = "", **data: object) -> dict:
    return {"event": kind, "event_data": {"host": host, **data}}


def feed(progress: runner.Progress, events: list[dict]) -> None:
    for item in events:
        assert progress.handle(item) is True


def test_piped_progress_prints_one_line_per_task_as_it_ends_and_counts_hosts():
    out = io.StringIO()
    progress = runner.Progress(["h1", "h2", "h3"], out, live=False)
    feed(progress, [
        event("playbook_on_task_start", task="Transfer images"),
        event("runner_on_ok", "h1", res={"transferred_bytes": 3 * 2**20}),
        event("runner_on_failed", "h2", res={"msg": "disk\\nfull"}, task_path="/r/images.yml:3"),
        event("runner_on_unreachable", "h3", res={"msg": "ssh: timed out"}),
    ])
    assert out.getvalue() == ""                   # printed when the task ends
    feed(progress, [
        event("playbook_on_task_start", task="Load images"),
        event("runner_on_skipped", "h1"),
        event("playbook_on_stats", ok={"h1": 5, "localhost": 2}, changed={"h1": 1},
              failures={"h2": 1}, dark={"h3": 1}),
    ])
    lines = out.getvalue().splitlines()
    assert lines == ["[1 done, 1 failed, 1 unreachable of 3 | 3.0 MiB moved] Transfer images",
                     "[1 done, 1 failed, 1 unreachable of 3 | 3.0 MiB moved] Load images"]
    assert "\r" not in out.getvalue()
    summary = progress.summary()
    assert summary[1].split()[:2] == ["h3", "unreachable"]
    assert summary[2].split()[:2] == ["h2", "failed"]
    assert summary[3].split()[:4] == ["h1", "ok", "5", "1"]
    assert summary[-1] == "1 ok, 1 failed, 1 unreachable of 3 host(s)"
    assert not any(line.startswith("localhost") for line in summary)   # ran fine: not listed
    assert len(out.getvalue().splitlines()) == 2                       # no line twice
    assert runner.exit_code(progress, 2) == runner.EXIT_FAILED_HOSTS


def test_live_progress_rewrites_one_line():
    out = io.StringIO()
    progress = runner.Progress(["h1"], out, live=True)
    feed(progress, [event("playbook_on_task_start", task="Ping")])
    assert out.getvalue() == "\r\033[K[0 done, 0 failed, 0 unreachable of 1] Ping"


def test_done_counts_the_hosts_that_finished_the_current_task():
    out = io.StringIO()
    progress = runner.Progress(["h1", "h2", "h3", "h4"], out, live=True)
    feed(progress, [
        event("playbook_on_task_start", task="Transfer images"),
        event("runner_on_start", "h1"),
        event("runner_item_on_ok", "h1"),                  # one item: not the task
        event("runner_on_ok", "h1"),
        event("runner_on_skipped", "h2"),
        event("runner_on_failed", "h3", res={"msg": "tolerated"}, ignore_errors=True),
        event("runner_on_failed", "h4", res={"msg": "disk full"}),
    ])
    assert progress.line() == "[3 done, 1 failed, 0 unreachable of 4] Transfer images"
    feed(progress, [event("playbook_on_task_start", task="Load images"),
                    event("runner_on_ok", "h2")])
    assert progress.line() == "[1 done, 1 failed, 0 unreachable of 4] Load images"
    assert out.getvalue().endswith("\r\033[K[0 done, 1 failed, 0 unreachable of 4] Load images")


def test_a_controller_only_run_lists_the_controller_and_its_failure():
    """stage.yml plays on localhost: a failure there is shown with its reason, and the
    inventory's hosts, which nothing ran on, are not shown as ok."""
    progress = runner.Progress(["h1", "h2"], io.StringIO(), live=False)
    feed(progress, [
        event("playbook_on_task_start", task="Download licenses"),
        event("runner_on_failed", "localhost", res={"msg": "HTTP Error 401: Unauthorized"},
              task_path="/p/roles/airlift_stage/tasks/licenses.yml:12"),
        event("playbook_on_stats", ok={"localhost": 3}, failures={"localhost": 1},
              processed={"localhost": 1}),
    ])
    summary = progress.summary()
    assert summary[1].split()[:3] == ["localhost", "failed", "3"]
    assert summary[1].endswith("HTTP Error 401: Unauthorized")
    assert not any(line.startswith(("h1", "h2")) for line in summary)
    assert summary[-2:] == ["0 ok, 1 failed, 0 unreachable of 1 host(s)",
                            "no task ran on the 2 targeted host(s) of the inventory"]
    assert runner.exit_code(progress, 2) == runner.EXIT_FAILED_HOSTS


def test_a_controller_failure_in_a_fleet_run_is_listed_and_unrun_hosts_are_not_ok():
    progress = runner.Progress(["h1", "h2"], io.StringIO(), live=False)
    feed(progress, [
        event("playbook_on_task_start", task="Check"),
        event("runner_on_ok", "h1"),
        event("playbook_on_task_start", task="Verify the bundle"),
        event("runner_on_failed", "localhost", res={"msg": "bad signature"}),
        event("playbook_on_stats", ok={"h1": 1}, failures={"localhost": 1},
              processed={"h1": 1, "localhost": 1}),
    ])
    rows = {line.split()[0]: line.split()[1:] for line in progress.summary()[1:-1]}
    assert rows["localhost"][0] == "failed" and rows["localhost"][-2:] == ["bad", "signature"]
    assert rows["h2"][:2] == ["not", "run"]
    assert rows["h1"][0] == "ok"
    assert progress.summary()[-1] == "1 ok, 1 failed, 0 unreachable, 1 not run of 3 host(s)"
    assert runner.exit_code(progress, 2) == runner.EXIT_FAILED_HOSTS


def test_exit_codes_tell_bad_input_failed_unreachable_and_ok_apart():
    def progress_after(*events: dict) -> runner.Progress:
        progress = runner.Progress(["h1", "h2"], io.StringIO(), live=False)
        feed(progress, list(events))
        return progress

    assert runner.exit_code(progress_after(), 0) == runner.EXIT_OK
    unreachable = progress_after(event("runner_on_unreachable", "h1", res={}))
    assert runner.exit_code(unreachable, 4) == runner.EXIT_UNREACHABLE_HOSTS
    bad = progress_after(event("runner_on_failed", "h1", res={"msg": "set airlift_eula"},
                               task_path="/p/roles/airlift_preflight/tasks/validate_inventory.yml:20"))
    assert runner.exit_code(bad, 2) == runner.EXIT_BAD_INPUT
    spec = progress_after(event("runner_on_failed", "h1", res={"msg": "must be one of"},
                                task_action="ansible.builtin.validate_argument_spec"))
    assert runner.exit_code(spec, 2) == runner.EXIT_BAD_INPUT
    assert runner.exit_code(progress_after(), 4) == runner.EXIT_BAD_INPUT   # parser error
    ignored = progress_after(event("runner_on_failed", "h1", res={}, ignore_errors=True))
    assert runner.exit_code(ignored, 0) == runner.EXIT_OK


def test_usage_report_lines_are_passed_on():
    progress = runner.Progress(["h1"], io.StringIO(), live=False)
    progress.handle({"event": "verbose", "stdout": "airlift usage: 1 of 1 host(s) reported\n"
                     "  report: /r/usage-report.json\nother"})
    assert progress.report_lines == ["airlift usage: 1 of 1 host(s) reported",
                                     "  report: /r/usage-report.json"]


def test_rotation_keeps_the_newest_runner_folders_only(tmp_path):
    for run in ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z"):
        (tmp_path / run / "runner").mkdir(parents=True)
        (tmp_path / run / "usage").mkdir()
    runner.rotate(tmp_path, keep=2)
    assert sorted(p.parent.name for p in tmp_path.glob("*/runner")) == \
        ["20260102T000000Z", "20260103T000000Z"]
    assert len(list(tmp_path.glob("*/usage"))) == 3     # reports are never rotated


def test_the_environment_is_scrubbed_from_the_command_artifact(tmp_path):
    command = tmp_path / "command"
    command.write_text('{"command": ["ansible-playbook"], "cwd": "/p", '
                       '"env": {"AIRLIFT_API_KEY": "s3cret", "PATH": "/bin"}}')
    calls = []
    handler = runner.scrubbing(lambda event: calls.append(event) or True, command)
    assert handler({"event": "playbook_on_start"}) is True
    text = command.read_text()
    assert "s3cret" not in text
    assert '"env_names": ["AIRLIFT_API_KEY", "PATH"]' in text
    assert '"command": ["ansible-playbook"]' in text
    assert len(calls) == 1
