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
