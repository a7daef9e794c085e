"""Every airlift verb answers a missing or wrong path (or value) with one sentence naming
the fix and exit 2, before it builds, signs, runs or writes anything."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

from airlift import cli, cli_playbooks


def leaf_verbs(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """Every runnable verb of the parser, as typed: `bundle sign`, `preflight`, ..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from leaf_verbs(sub, (*prefix, name))
            return
    yield " ".join(prefix)


@pytest.fixture
def paths(tmp_path, monkeypatch):
    """A scratch project root, a file, a folder that is no bundle, a folder with a manifest."""
    monkeypatch.setenv("AIRLIFT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
    (tmp_path / "home").mkdir()
    for shared in ("plugins", "lab"):
        (tmp_path / "home" / shared).symlink_to(ROOT / shared)
    (tmp_path / "file").write_text("x\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "manifest.json").write_text("{}\n")
    return tmp_path


def playbook_cases(verb: str) -> list[tuple[list[str], str]]:
    return [([verb, "-i", "{t}/none.yml"],
             "inventory {t}/none.yml not found (give a path to a file or folder"),
            ([verb, "-i", "localhost,", "-e", "@{t}/none.yml"],
             "extra variables file (-e @FILE) {t}/none.yml not found: give a YAML or JSON file"),
            ([verb, "-i", "localhost,", "--vault-password-file", "{t}/none.txt"],
             "vault password file {t}/none.txt not found: give the file holding the vault "
             "password"),
            ([verb, "-i", "localhost,", "--vault-id", "prod@{t}/none.txt"],
             "vault password file (--vault-id prod) {t}/none.txt not found: "
             "give the file (or script) holding that vault's password")]


# verb -> [(argv, what the one line says)]; {t} is the scratch folder.
CASES: dict[str, list[tuple[list[str], str]]] = {
    "lab up": [(["lab", "up", "0"], "0 hosts: the lab needs at least one host, give a count"),
               (["lab", "up", "1", "--docker", "-1"], "-1 docker hosts: give 0 or more")],
    "lab down": [(["lab", "down", "{t}/file"], "unrecognized arguments")],
    "lab status": [(["lab", "status", "{t}/file"], "unrecognized arguments")],
    "lab reap": [(["lab", "reap", "{t}/file"], "unrecognized arguments")],
    "lab traffic": [(["lab", "traffic", "--hosts", "0"],
                     "--requests and --hosts must be at least 1")],
    "lab gpu": [(["lab", "gpu", "airlift-no-such-host"],
                 "airlift-no-such-host is not running: start it with `airlift lab up`")],
    "lab images": [(["lab", "images", "--padding-mb", "-1"],
                    "--padding-mb -1 is negative: give 0 (no padding) or a size in MB"),
                   (["lab", "images", "--service", "nope"],
                    "unknown simulator service nope: give one of")],
    "bundle keygen": [(["bundle", "keygen", "--out", "{t}/file"],
                       "{t}/file is a file, not a folder: give a folder for the key pair")],
    "bundle sign": [(["bundle", "sign", "{t}/empty", "--key", "{t}/file"],
                     "no manifest.json in {t}/empty: give the bundle folder that `airlift "
                     "stage` wrote"),
                    (["bundle", "sign", "{t}/none", "--key", "{t}/file"],
                     "no manifest.json in {t}/none: give the bundle folder"),
                    (["bundle", "sign", "{t}/bundle", "--key", "{t}/none.key"],
                     "cannot read the signing key {t}/none.key: ")],
    "bundle verify": [(["bundle", "verify", "{t}/empty", "--public-key", "{t}/file"],
                       "no manifest.json in {t}/empty: give the bundle folder"),
                      (["bundle", "verify", "{t}/bundle", "--public-key", "{t}/none.pub"],
                       "cannot read the public key {t}/none.pub (No such file or directory): "
                       "give the .pub file of the signing key pair"),
                      (["bundle", "verify", "{t}/bundle", "--public-key", "{t}/empty"],
                       "cannot read the public key {t}/empty (Is a directory): give the .pub")],
    "verify": [(["verify", "{t}/none", "--public-key", "{t}/file"],
                "no manifest.json in {t}/none: give the bundle folder"),
               (["verify", "{t}/bundle", "--public-key", "{t}/file"],
                "cannot read the public key {t}/file (not a PEM public key): give the .pub")],
    "report merge": [(["report", "merge", "{t}/none", "--out", "{t}/out"],
                      "not a readable usage report"),
                     (["report", "merge", "{t}/empty", "--out", "{t}/out"],
                      "give a run folder holding usage/usage-report.json")],
    "report show": [(["report", "show", "{t}/none"],
                     "no usage-report.json in {t}/none (give a run folder")],
    "ca init": [(["ca", "init", "--dir", "{t}/file"],
                 "{t}/file is a file, not a folder: give --dir a folder for the CA")],
    "ca issue-server": [(["ca", "issue-server", "--dir", "{t}/empty", "--host", "h1"],
                         "cannot read the CA in {t}/empty: FileNotFoundError (make one with "
                         "`airlift ca init --dir {t}/empty`)")],
    "ca issue-client": [(["ca", "issue-client", "--dir", "{t}/none", "--name", "ops"],
                         "cannot read the CA in {t}/none: FileNotFoundError (make one with")],
    "demo": [(["demo", "--hosts", "0"], "0 hosts: the lab needs at least one host"),
             (["demo", "--docker-hosts", "-1"], "--docker-hosts -1: give 0 or more")],
    **{verb: playbook_cases(verb) for verb in cli_playbooks.PLAYBOOK_VERBS},
}


def test_every_verb_has_bad_input_cases():
    assert sorted(leaf_verbs(cli.build_parser())) == sorted(CASES)


@pytest.mark.parametrize(("verb", "index"), [(verb, index) for verb, cases in CASES.items()
                                             for index in range(len(cases))])
def test_bad_path_is_one_sentence_naming_the_fix_and_exit_2(verb, index, paths, capsys):
    argv, expected = CASES[verb][index]
    before = sorted(path.relative_to(paths) for path in paths.rglob("*"))
    try:
        rc = cli.main([arg.format(t=paths) for arg in argv])
    except SystemExit as exc:   # argparse: the verb takes no such argument
        rc = exc.code
    out, err = capsys.readouterr()
    assert rc == cli.EXIT_BAD_INPUT, out + err
    assert "Traceback" not in out + err
    lines = [line for line in (out + err).splitlines()
             if line.startswith("airlift: ") or ": error: " in line]
    assert len(lines) == 1, out + err
    assert expected.format(t=paths) in lines[0]
    # Refused before any work: nothing new in the scratch folder (no reports, no keys).
    after = sorted(path.relative_to(paths) for path in paths.rglob("*"))
    assert after == before
    assert not (Path(paths) / "home" / "reports").exists()
