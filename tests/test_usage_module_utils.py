"""Host-side usage collection: the month window and the deterministic Output archive."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tarfile
import time

import airlift_usage as au


def test_month_window_crosses_the_year():
    assert au.month_window(3, dt.date(2026, 2, 10)) == ["2026-02", "2026-01", "2025-12"]
    assert au.month_path("2025-12") == "/records/usage-logs/12/2025"


def test_archive_is_named_by_content_and_the_same_for_the_same_content(tmp_path):
    output = tmp_path / "output" / "sentiment"
    output.mkdir(parents=True)
    (output / "usage-2026-11.jsonl").write_text('{"quantity": 1}\n')
    first = au.archive_dir(str(output), str(tmp_path / "archives"))
    time.sleep(0.01)
    second = au.archive_dir(str(output), str(tmp_path / "archives"))
    assert first == second
    with open(first["path"], "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == first["sha256"]
    assert os.path.basename(first["path"]) == f"{first['sha256']}.tar.gz"
    with tarfile.open(first["path"]) as tar:
        assert tar.getnames() == ["sentiment", "sentiment/usage-2026-11.jsonl"]
    # The source is read, never changed; no temporary file is left behind.
    assert (output / "usage-2026-11.jsonl").read_text() == '{"quantity": 1}\n'
    assert sorted(os.listdir(tmp_path / "archives")) == [os.path.basename(first["path"])]
    (output / "usage-2026-11.jsonl").write_text('{"quantity": 1}\n{"quantity": 2}\n')
    assert au.archive_dir(str(output), str(tmp_path / "archives"))["sha256"] != first["sha256"]


def output_tree(root):
    """An Output root as deploy leaves it: two current services, the front door's log,
    a removed service's records, a stray file and a symbolic link."""
    for name, text in (("sentiment", "s\n"), ("read", "r\n"), ("frontdoor", "log\n"),
                       ("retired", '{"quantity": 7}\n')):
        (root / name).mkdir(parents=True)
        (root / name / "records.jsonl").write_text(text)
    (root / "notes.txt").write_text("not a directory")
    (root / "elsewhere").symlink_to(root / "retired")
    return [{"name": "sentiment", "output_dir": str(root / "sentiment")},
            {"name": "read", "output_dir": str(root / "read") + "/"}]


def test_removed_services_output_is_archived_and_nothing_else(tmp_path):
    root = tmp_path / "output"
    services = output_tree(root)
    archives = tmp_path / "archives"
    assert au.orphan_output_dirs(str(root), services, [str(root / "frontdoor")]) == [
        ("retired", str(root / "retired"))]
    [entry] = au.collect_removed(str(root), services, [str(root / "frontdoor")],
                                 str(archives))
    assert entry["name"] == "retired" and entry["collected_via"] == au.REMOVED
    assert "all_time" not in entry and "error" not in entry  # no totals, never zero
    archive = entry["archive"]
    assert archive["path"] == f"raw/{archive['sha256']}.tar.gz"
    assert archive["host_path"] == str(archives / f"{archive['sha256']}.tar.gz")
    with tarfile.open(archive["host_path"]) as tar:
        assert tar.getnames() == ["retired", "retired/records.jsonl"]
        assert tar.extractfile("retired/records.jsonl").read() == b'{"quantity": 7}\n'
    # Read, never changed or deleted; archived again, the same name.
    assert (root / "retired" / "records.jsonl").read_text() == '{"quantity": 7}\n'
    again = au.collect_removed(str(root), services, [str(root / "frontdoor")], str(archives))
    assert again == [entry]


def test_removed_services_edge_cases(tmp_path):
    root = tmp_path / "output"
    services = output_tree(root)
    # The archive folder inside the Output root is never archived; check mode writes none.
    inside = root / "archives"
    [entry] = au.collect_removed(str(root), services, [str(root / "frontdoor")], str(inside),
                                 check_mode=True)
    assert entry["name"] == "retired" and "archive" not in entry and not inside.exists()
    inside.mkdir()
    assert [e["name"] for e in au.collect_removed(
        str(root), services, [str(root / "frontdoor")], str(inside), check_mode=True)] == [
        "retired"]
    # A current service named like an orphaned directory elsewhere keeps its own entry name.
    moved = [{"name": "retired", "output_dir": str(tmp_path / "new" / "retired")}, *services]
    names = [e["name"] for e in au.collect_removed(str(root), moved, [str(root / "frontdoor")],
                                                   str(inside), check_mode=True)]
    assert names == ["retired (removed)"]
    # No Output root: nothing to add. One that cannot be listed: said, not skipped.
    assert au.collect_removed(str(tmp_path / "none"), services, [], str(tmp_path / "a")) == []
    [failed] = au.collect_removed(str(root / "notes.txt"), services, [], str(tmp_path / "a"))
    assert failed["collected_via"] == au.REMOVED and "could not list" in failed["error"]


def test_query_keeps_translator_numeric_billed_unit():
    """What the module returns per meter is the endpoint's JSON as it came: a numeric
    billedUnit (disconnected Translator) reaches the report, nothing filters it out."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = {"type": "CommerceUsageResponse", "apiType": "texttranslation",
            "serviceName": "texttranslation", "meters": [{
                "name": "CognitiveServices.TextTranslation.Container."
                        "OneDocumentTranslatedCharacters",
                "quantity": 1250000, "billedUnit": 1875000}]}
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the http.server interface
            asked.append(self.path)
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = au.query(server.server_address[1], ["2026-06"])
    finally:
        server.shutdown()
        server.server_close()
    assert asked == ["/records/usage-logs/", "/records/usage-logs/06/2026"]
    for log in (result["all_time"], result["months"]["2026-06"]):
        [meter] = log["meters"]
        assert meter["billedUnit"] == 1875000 and meter["quantity"] == 1250000


def test_leftover_copies_of_a_killed_collection_are_removed_once_old(tmp_path):
    """Only this module's own file names, only once old: a running collection's copy
    waiting to be fetched (younger) and anything else in the folder stay."""
    now = 1_000_000.0
    old, young = now - au.LEFTOVER_AFTER_SECONDS - 1, now - 60
    files = {"a" * 64 + ".tar.gz": old, ".12-34.tar.gz.partial": old,
             "b" * 64 + ".tar.gz": young, ".56-78.tar.gz.partial": young,
             "notes.txt": old}
    for name, mtime in files.items():
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (mtime, mtime))
    removed = au.remove_leftovers(str(tmp_path), now=now)
    assert sorted(os.path.basename(path) for path in removed) == [
        ".12-34.tar.gz.partial", "a" * 64 + ".tar.gz"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".56-78.tar.gz.partial", "b" * 64 + ".tar.gz", "notes.txt"]
    assert au.remove_leftovers(str(tmp_path / "absent"), now=now) == []
