"""The first watch after the upgrade to schema 6 reads again each file an older loader decided
without the completeness check (P12): a zero-tailed file it let through gets one honest line
(and its quarantine move), a file that stays whole gets none, and nothing is read twice."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from support.imagegen import zero_tailed
from support.legacy import schema_5_store, sha_of
from support.watch import SETTLE, Harness, image_bytes

from nsfw_tui.core.store import Store


@pytest.fixture
def upgraded(tmp_path):
    """An inbox whose two files a schema-5 store decided SFW: one whole, one zero-tailed."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    whole = inbox / "whole.png"
    whole.write_bytes(image_bytes(1, red=10))
    partial = zero_tailed(inbox / "partial.jpg", 0.5)
    for f in (whole, partial):
        os.utime(f, (1, 1))  # long finished: a decode failure is final at once
    (tmp_path / "home").mkdir()
    schema_5_store(tmp_path / "home" / "store.db", "fake-watch", {whole: 0.04, partial: 0.01})
    holder: list[Harness] = []
    yield holder
    for h in holder:
        h.stop()


def quiet_start(h: Harness, **options) -> None:
    """Start, then wait until the first rescan is done and nothing has happened for a while."""
    w = h.start(**options)
    deadline = time.monotonic() + 20
    while not (w.stats().rescans >= 1 and w.idle()):
        assert time.monotonic() < deadline, "the watcher stayed busy"
        time.sleep(0.02)
    time.sleep(2 * SETTLE)
    assert w.idle()


def read_names(h: Harness) -> list[str]:
    return sorted(Path(p).name for p, _ in h.reads)


def test_a_restart_after_the_upgrade_re_decides_only_what_reading_again_changes(tmp_path, upgraded):
    h = Harness(tmp_path)  # opens the store: migrated to schema 6
    upgraded.append(h)
    h.start()
    h.wait_lines(1)
    notices = h.notices
    assert any(
        n.startswith("rescan (catch-up): 2 files, 0 to score, 2 to read again") for n in notices
    ), notices
    [line] = h.lines
    assert Path(line["path"]).name == "partial.jpg"
    assert line["decision"] == "error" and line["probability"] is None
    assert line["reason"].startswith("truncated: JPEG file is incomplete")
    assert line["source"] == "decoder" and line["action"] == "none"
    assert read_names(h) == ["partial.jpg", "whole.png"], "each read once, the whole one too"
    assert h.scorer.frames == 0, "the whole file keeps its score"
    h.stop()

    h.lines.clear()
    h.reads.clear()
    quiet_start(h)
    assert h.lines == [] and h.reads == [], "the next start reads and tells nothing"
    assert len(h.log.read_text().splitlines()) == 1


def test_with_a_quarantine_the_zero_tailed_file_moves_once_and_the_whole_one_stays(
    tmp_path, upgraded
):
    h = Harness(tmp_path)
    upgraded.append(h)
    q = tmp_path / "quarantine"
    sha = sha_of(h.inbox / "partial.jpg")
    h.start(quarantine=str(q))
    h.wait_lines(1)
    [line] = h.lines
    assert line["decision"] == "error" and line["action"] == "quarantined"
    assert line["dest"] == str(q / "partial.jpg") and (q / "partial.jpg").exists()
    assert sorted(p.name for p in h.inbox.iterdir()) == ["whole.png"]
    h.stop()

    h.lines.clear()
    h.reads.clear()
    quiet_start(h, quarantine=str(q))
    assert h.lines == [] and h.reads == []
    with Store.open(h.store_path, check=False) as store:
        assert [(m.sha256, Path(m.dest).name) for m in store.moves()] == [(sha, "partial.jpg")]
