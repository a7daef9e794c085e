"""The airlift command's run view: progress, summary and exit codes from runner events."""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import sys
import types
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from airlift import cli, cli_playbooks, runner


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
    # Drawn at once when the task starts; as results come in, at most every 0.1 s.
    assert "\r\033[K[0 done, 1 failed, 0 unreachable of 4] Load images" in out.getvalue()
    assert "\n" not in out.getvalue()


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
    # The same validation for every host at once (the shared role's spec, folder refusals).
    for action in ("airlift_fleet_arguments", "airlift_fleet_checks"):
        fleet = progress_after(event("runner_on_failed", "h1", res={"msg": "set x"},
                                     task_action=action))
        assert runner.exit_code(fleet, 2) == runner.EXIT_BAD_INPUT
    assert runner.exit_code(progress_after(), 4) == runner.EXIT_BAD_INPUT   # parser error
    ignored = progress_after(event("runner_on_failed", "h1", res={}, ignore_errors=True))
    assert runner.exit_code(ignored, 0) == runner.EXIT_OK


def test_usage_report_lines_are_passed_on():
    progress = runner.Progress(["h1"], io.StringIO(), live=False)
    progress.handle({"event": "verbose", "stdout": "airlift usage: 1 of 1 host(s) reported\n"
                     "  report: /r/usage-report.json\n  open in a browser: /r/usage-report.html"
                     "\nother"})
    assert progress.report_lines == ["airlift usage: 1 of 1 host(s) reported",
                                     "  report: /r/usage-report.json",
                                     "  open in a browser: /r/usage-report.html"]


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


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A scratch project root (AIRLIFT_HOME): reports and runner artifacts land there."""
    monkeypatch.setenv("AIRLIFT_HOME", str(tmp_path))
    monkeypatch.setenv("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
    (tmp_path / "plugins").symlink_to(ROOT / "plugins")
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    h1:\n    h2:\n")
    return tmp_path


class FakeRunner:
    """Stands in for ansible_runner.run: records its arguments, runs nothing."""

    def __init__(self):
        self.calls = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return types.SimpleNamespace(rc=0)


def execute(playbook="site.yml", runner_=FakeRunner, **options):
    """Run through runner.execute, piped; runner_=None runs ansible-runner for real."""
    out = io.StringIO()
    rc = runner.execute(runner.PlaybookRun(playbook, **options), out=out, live=False,
                        runner=runner_() if runner_ is FakeRunner else runner_)
    return rc, out.getvalue()


def test_the_operator_may_turn_host_key_checking_off_and_the_inventory_must_parse(
        project, monkeypatch):
    fake = FakeRunner()
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "False")
    monkeypatch.setenv("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "False")
    assert execute(runner_=fake, inventory=str(project / "hosts.yml"))[0] == runner.EXIT_OK
    envvars = fake.calls[0]["envvars"]
    assert envvars["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    assert envvars["ANSIBLE_INVENTORY_UNPARSED_FAILED"] == "True"
    assert envvars["ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED"] == "True"


def test_a_real_run_checks_host_keys(project, monkeypatch):
    """ansible-runner turns host key checking off unless told: the run must check, as
    ansible.cfg and the printed ansible-playbook line do."""
    monkeypatch.delenv("ANSIBLE_HOST_KEY_CHECKING", raising=False)
    (project / "play.yml").write_text("""
- name: Look at the run's settings
  hosts: all
  connection: local
  gather_facts: false
  tasks:
    - name: Host keys are checked
      ansible.builtin.assert:
        that: lookup('ansible.builtin.config', 'HOST_KEY_CHECKING') | bool
""")
    rc, out = execute("play.yml", runner_=None, inventory="localhost,")
    assert rc == runner.EXIT_OK, out
    assert "1 ok, 0 failed, 0 unreachable of 1 host(s)" in out


def test_rollout_with_an_inventory_that_does_not_parse_exits_2(project, capsys):
    (project / "broken.yml").write_text("all:\n  hosts:\n    a: {\n  b\n")
    assert cli.main(["rollout", "-i", str(project / "broken.yml")]) == runner.EXIT_BAD_INPUT
    out = capsys.readouterr().out
    assert f"airlift: the inventory {project / 'broken.yml'} does not parse: " in out
    assert "reports" not in [path.name for path in project.iterdir()]   # nothing ran


def test_an_inventory_part_of_which_does_not_parse_is_bad_input(project):
    (project / "inventory").mkdir()
    (project / "inventory" / "good.yml").write_text("all:\n  hosts:\n    h1:\n")
    (project / "inventory" / "broken.yml").write_text("all:\n  hosts:\n    a: {\n")
    fake = FakeRunner()
    rc, out = execute(runner_=fake, inventory=str(project / "inventory"))
    assert rc == runner.EXIT_BAD_INPUT and not fake.calls
    assert "broken.yml" in out


def test_no_host_to_run_on_is_bad_input_that_names_the_fix(project):
    hosts = str(project / "hosts.yml")
    rc, out = execute(inventory=hosts, limit="nowhere")
    assert rc == runner.EXIT_BAD_INPUT
    assert (f"airlift: --limit nowhere matches no host of the inventory {hosts}: see its "
            f"hosts and groups with `ansible-inventory -i {hosts} --graph`") in out
    (project / "empty.yml").write_text("all:\n  children:\n    sites: {}\n")
    rc, out = execute(inventory=str(project / "empty.yml"))
    assert rc == runner.EXIT_BAD_INPUT
    assert f"the inventory {project / 'empty.yml'} has no host for `all`" in out
    # A controller-only playbook (stage.yml) targets localhost, which every inventory has.
    run = runner.PlaybookRun("playbooks/stage.yml", inventory=str(project / "empty.yml"),
                             pattern="localhost")
    assert runner.target_hosts(run, runner.environment()) == ["localhost"]


def plays(path):
    for play in yaml.safe_load(path.read_text()):
        imported = play.get("ansible.builtin.import_playbook")
        yield from plays(path.parent / imported) if imported else [play]


def test_controller_verbs_are_those_whose_playbooks_run_on_localhost_only():
    for verb, (playbook, _) in cli_playbooks.PLAYBOOK_VERBS.items():
        on_controller = all(play["hosts"] == "localhost" for play in plays(ROOT / playbook))
        assert on_controller == (verb in cli_playbooks.CONTROLLER_VERBS), verb
        expected = "localhost" if on_controller else "all"
        assert cli.build_parser().parse_args([verb]).pattern == expected


def test_every_option_is_passed_through_and_printed_as_ansible_playbook_takes_it(monkeypatch):
    runs = []
    monkeypatch.setattr(runner, "execute", lambda run: runs.append(run) or 0)
    assert cli.main([
        "rollout", "-i", "inventories/example", "--limit", "canary", "--check", "--diff",
        "--forks", "50", "-e", "airlift_serial=1", "-e", '{"airlift_eula": "accept"}',
        "-e", "@extra vars.yml", "--vault-password-file", "/home/op/.vault-pass",
        "--vault-id", "prod@prompt", "--vault-id", "dev@/home/op/dev-pass"]) == 0
    [run] = runs
    run.run_id = "20260101T000000Z"
    expected = ("-i inventories/example --limit canary --check --diff --forks 50 "
                "-e airlift_serial=1 -e '{\"airlift_eula\": \"accept\"}' "
                "-e '@extra vars.yml' --vault-password-file /home/op/.vault-pass "
                "--vault-id prod@prompt --vault-id dev@/home/op/dev-pass "
                "-e airlift_run_id=20260101T000000Z")
    assert run.equivalent() == f"ansible-playbook {expected} site.yml"
    assert run.cmdline() == shlex.split(expected)
    short = cli.build_parser().parse_args(["preflight", "-l", "h1", "-C", "-D", "-f", "5"])
    assert (short.limit, short.check, short.diff, short.forks) == ("h1", True, True, 5)


def test_secret_looking_extra_vars_are_redacted_in_every_form():
    redact = runner.redact_extra_vars
    assert redact("airlift_stage_api_key=k1 airlift_serial=2") == \
        "airlift_stage_api_key=<redacted> airlift_serial=2"
    assert redact("DB_PASSWORD='two words' x=\"a b\" auth_token=k2") == \
        "DB_PASSWORD=<redacted> x=\"a b\" auth_token=<redacted>"
    assert json.loads(redact('{"proxy": [{"name": "p", "Secret": "k3"}], "n": 1}')) == \
        {"proxy": [{"name": "p", "Secret": "<redacted>"}], "n": 1}
    assert redact("proxy='{\"password\": \"k4 k4\"}' n=1") == "proxy=<redacted> n=1"
    for malformed in ("{api_key: k4, unclosed", "api_key = k4", "n=1 api_key k4"):
        assert redact(malformed) == "<redacted>"
    for kept in ("@secrets.yml", "airlift_serial=2", '{"airlift_eula": "accept"}'):
        assert redact(kept) == kept
    assert runner.redact_command(
        ["ansible-playbook", "-e", "token=k5", "--extra-vars", "password=k6", "token.yml"]) \
        == ["ansible-playbook", "-e", "token=<redacted>", "--extra-vars", "password=<redacted>",
            "token.yml"]


def test_secret_extra_vars_reach_the_run_but_not_its_output_or_artifacts(project):
    key, password = "k-value-api-key", "k-value-password"
    sha1 = {value: hashlib.sha1(value.encode()).hexdigest() for value in (key, password)}
    (project / "play.yml").write_text(f"""
- name: Use the secrets
  hosts: all
  connection: local
  gather_facts: false
  tasks:
    - name: The run got the values given on the command line
      ansible.builtin.assert:
        that:
          - airlift_stage_api_key | hash('sha1') == '{sha1[key]}'
          - proxy.password | hash('sha1') == '{sha1[password]}'
""")
    rc, out = execute("play.yml", runner_=None, inventory="localhost,", extra_vars=[
        f"airlift_stage_api_key={key} airlift_serial=1", json.dumps({"proxy": {
            "password": password}})])
    assert rc == runner.EXIT_OK, out
    assert out.startswith("+ ansible-playbook -i localhost, -e 'airlift_stage_api_key=<redacted> "
                          "airlift_serial=1' -e '{\"proxy\": {\"password\": \"<redacted>\"}}' ")
    files = [path for path in (project / "reports").rglob("*") if path.is_file()]
    assert len(files) > 5
    for path in [*files]:
        assert b"k-value" not in path.read_bytes(), path
    assert "k-value" not in out
    [command] = (project / "reports").rglob("command")
    assert "airlift_stage_api_key=<redacted> airlift_serial=1" in \
        json.loads(command.read_text())["command"]


def test_a_preflight_run_prints_the_compliance_page_to_open(project):
    def preflight(**kwargs):
        """Writes what the preflight play writes into the run's folder."""
        page = Path(kwargs["artifact_dir"]).parent / "preflight" / "compliance.html"
        page.parent.mkdir()
        page.write_text("<!DOCTYPE html>")
        return types.SimpleNamespace(rc=0)

    rc, out = execute("playbooks/preflight.yml", runner_=preflight, run_id="20260101T000000Z",
                      inventory=str(project / "hosts.yml"))
    [page] = project.glob("reports/*/preflight/compliance.html")
    assert rc == runner.EXIT_OK
    assert f"compliance report, open in a browser: {page}" in out
    assert "open in a browser" not in execute(inventory=str(project / "hosts.yml"),
                                              run_id="20260101T000001Z")[1]


def test_ansible_is_found_beside_the_interpreter_outside_an_activated_venv(project,
                                                                            monkeypatch):
    """`.venv/bin/airlift stage` without `activate`: PATH lacks the venv's bin, where
    ansible and ansible-playbook are; both the host listing and the run must find them."""
    bare = "/usr/local/bin:/usr/bin:/bin"
    assert not any((Path(part) / "ansible").exists() for part in bare.split(":"))
    monkeypatch.setenv("PATH", bare)
    (project / "play.yml").write_text("""
- name: Run outside an activated venv
  hosts: all
  connection: local
  gather_facts: false
  tasks:
    - name: The run itself started
      ansible.builtin.debug:
        msg: ran
""")
    rc, out = execute("play.yml", runner_=None, inventory="localhost,")
    assert rc == runner.EXIT_OK, out
    assert "1 ok, 0 failed, 0 unreachable of 1 host(s)" in out
    assert runner.environment()["PATH"].split(":")[0] == str(Path(sys.executable).parent)
