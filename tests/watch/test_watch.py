"""`nsfw-tui watch` with a real observer on tmp_path: docs/reliability.md W1-W5, W8-W11, the TUI."""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from support.imagegen import photo, truncated_jpeg, zero_tailed
from support.tui import CLI_WITH_FAKE_SCORER, FAKE_ID, prepare_home, wait_for, watch_app
from support.watch import SETTLE, Harness, image_bytes
from textual.widgets import Static
from typer.testing import CliRunner

from nsfw_tui.cli import app as cli_app
from nsfw_tui.core.config_schema import WatchConfig
from nsfw_tui.core.home import resolve_home
from nsfw_tui.core.store import Store
from nsfw_tui.core.watch import move_no_overwrite, release
from nsfw_tui.tui.screens.watch import WatchReviewScreen, WatchScreen

KINDS = ["native", "polling"]
LINE_KEYS = {
    "time",
    "path",
    "sha256",
    "size",
    "probability",
    "decision",
    "action",
    "dest",
    "reason",
    "source",
    "model",
    "threshold",
    "cached",
}


def write_chunks(path: Path, data: bytes, chunks: int = 4) -> None:
    """One open, ``chunks`` flushed writes: the pattern that gives one closed event per file."""
    step = -(-len(data) // chunks)
    with open(path, "wb") as fh:
        for i in range(0, len(data), step):
            fh.write(data[i : i + step])
            fh.flush()


@pytest.fixture
def harness(tmp_path):
    holder: list[Harness] = []

    def make(kind: str = "native", **options) -> Harness:
        h = Harness(tmp_path, kind, **options)
        holder.append(h)
        return h

    yield make
    for h in holder:
        h.stop()


def assert_once(h: Harness, names: set[str]) -> None:
    counts = h.counts()
    assert set(counts) == names, f"missing {names - set(counts)}, extra {set(counts) - names}"
    assert max(counts.values()) == 1, [n for n, c in counts.items() if c > 1]


def partial_reads(h: Harness) -> int:
    return sum(1 for path, size in h.reads if size != os.path.getsize(path))


# -- W1 / W2: bursts, copies, moves, renames -------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_w1_burst_of_chunked_files_each_scored_once(harness, kind):
    h = harness(kind)
    h.start()
    n = 300
    started = time.monotonic()
    for i in range(n):
        write_chunks(h.inbox / f"burst_{i:04d}.png", image_bytes(i))
    written = time.monotonic() - started
    took = h.wait_lines(n, timeout=40)
    assert_once(h, {f"burst_{i:04d}.png" for i in range(n)})
    assert partial_reads(h) == 0
    assert h.scorer.frames == n, "each content is one inference"
    print(
        f"\nW1[{kind}]: {n} files x 4 chunks written in {written:.2f} s, all scored "
        f"exactly once, 0 read while partial, all scored {took:.2f} s after the last write "
        f"(settle {SETTLE} s)"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_w2_moved_in_and_part_renames_once_and_temporary_names_never(harness, kind):
    h = harness(kind)
    h.start()
    moved = {f"moved_{i:03d}.png" for i in range(100)}
    for i, name in enumerate(sorted(moved)):
        (h.outside / name).write_bytes(image_bytes(1000 + i))
        os.rename(h.outside / name, h.inbox / name)
    renamed = {f"dl_{i:03d}.png" for i in range(50)}
    for i, name in enumerate(sorted(renamed)):
        part = h.inbox / f"{name}.part"
        write_chunks(part, image_bytes(2000 + i))
        os.rename(part, h.inbox / name)
    temporary = ["x.png.part", "y.png.crdownload", "z.png.tmp", "w.png~", ".hidden.png"]
    for i, name in enumerate(temporary):
        (h.inbox / name).write_bytes(image_bytes(3000 + i))
    (h.inbox / ".staging").mkdir()
    (h.inbox / ".staging" / "inner.png").write_bytes(image_bytes(3100))
    h.wait_lines(150)
    assert_once(h, moved | renamed)
    print(
        f"\nW2[{kind}]: 100/100 renamed in and 50/50 .part renames scored exactly once; "
        f"{len(temporary) + 1} temporary or hidden names scored 0 times"
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_w3_slow_writers_are_never_scored_half_written(harness, kind):
    settle, max_pause = 0.8, 0.4
    h = harness(kind, settle_s=settle)
    h.start()
    rng = random.Random(7)
    datas = {f"slow_{i}.png": image_bytes(4000 + i, size=(120, 90)) for i in range(6)}
    pauses: list[float] = []

    def upload(name: str, data: bytes, seed: int) -> None:
        r = random.Random(seed)
        for start in range(0, len(data), 8192):
            with open(h.inbox / name, "ab") as fh:  # reopened each time: a closed event each
                fh.write(data[start : start + 8192])
            pause = r.uniform(0.05, max_pause)
            pauses.append(pause)
            time.sleep(pause)

    threads = [
        threading.Thread(target=upload, args=(name, data, rng.random()))
        for name, data in datas.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    h.wait_lines(len(datas), timeout=30)
    assert_once(h, set(datas))
    for name, d in h.by_name().items():
        assert d["size"] == len(datas[name]) and d["decision"] != "error"
    partial = partial_reads(h)
    assert partial == 0
    print(
        f"\nW3[{kind}]: {len(datas)} uploads in {len(pauses)} chunks, pauses up to "
        f"{max(pauses):.2f} s, quiet window {settle} s: {partial} read while partial, "
        f"size at scoring = final size for {len(datas)}/{len(datas)}"
    )


@pytest.mark.slow
def test_w4_truncated_at_rest_is_an_error_after_the_grace_then_rescored(harness):
    grace = 1.5
    h = harness(undecodable_grace_s=grace)
    h.start()
    full = io.BytesIO()
    photo((200, 150), 3).save(full, "JPEG", quality=90)
    data = full.getvalue()
    target = h.inbox / "cut.jpg"
    started = time.monotonic()
    target.write_bytes(data[: len(data) // 2])
    h.wait_lines(1, timeout=10, quiet=0)
    waited = time.monotonic() - started
    line = h.lines[0]
    assert line["decision"] == "error" and line["reason"].startswith("truncated")
    assert waited >= grace - 0.2, "a young truncated file is retried, not final at once"
    retries = len(h.reads)
    with open(target, "ab") as fh:  # the upload resumes
        fh.write(data[len(data) // 2 :])
    h.wait_lines(2, timeout=10)
    assert h.lines[1]["decision"] in ("nsfw", "sfw") and h.lines[1]["size"] == len(data)
    assert len(h.lines) == 2
    print(
        f"\nW4: truncated at rest logged as error after {waited:.2f} s (grace {grace} s, "
        f"{retries} decode attempts); re-scored once it grew"
    )


@pytest.mark.slow
@pytest.mark.slow  # the grace for undecodable files (W14)
def test_p12_zero_tailed_uploads_are_errors_never_scored(harness):
    """Preallocated downloads (full size, zeros at the end) settle, then fail as `truncated`;
    so does a WebP cut short, whose RIFF header still names the whole size."""
    h = harness()
    names = []
    for i, suffix in enumerate([".jpg"] * 8 + [".png", ".gif"]):
        zero_tailed(h.inbox / f"pre_{i}{suffix}", fraction=0.3 + 0.05 * i, seed=i)
        names.append(f"pre_{i}{suffix}")
    webp = io.BytesIO()
    photo((240, 180), seed=3).save(webp, "WEBP", quality=80)
    (h.inbox / "cut.webp").write_bytes(webp.getvalue()[: len(webp.getvalue()) * 2 // 3])
    names.append("cut.webp")
    h.start()
    h.wait_lines(len(names), timeout=30)
    assert_once(h, set(names))
    for d in h.by_name().values():
        assert (d["decision"], d["probability"]) == ("error", None), d
        assert d["reason"].startswith("truncated"), d


@pytest.mark.slow
def test_w14_undecodable_files_are_quarantined_after_the_grace_with_shipped_settings(harness):
    shipped = WatchConfig()
    settle, grace = shipped.settle_s, shipped.undecodable_grace_s
    budget = settle + grace + 3.0
    h = harness()
    q = h.tmp / "quarantine"

    def text(path: Path) -> None:
        path.write_text("this is not a picture\n")

    def cut(path: Path) -> None:
        truncated_jpeg(path, 0.5)  # an upload that stopped half-way and never grows

    makers = {"text": text, "cut": cut}
    landed: dict[str, float] = {}
    for kind, make in makers.items():  # there before the watch: the catch-up finds them
        make(h.inbox / f"there_{kind}.jpg")
    started = time.monotonic()
    h.start(
        quarantine=str(q),
        settle_s=settle,
        undecodable_grace_s=grace,
        never_settles_timeout_s=shipped.never_settles_timeout_s,
    )
    landed |= {f"there_{kind}.jpg": started for kind in makers}
    for kind, make in makers.items():  # dropped while watching
        make(h.inbox / f"dropped_{kind}.jpg")
        landed[f"dropped_{kind}.jpg"] = time.monotonic()
    decided = h.decided_at(set(landed), timeout=2 * budget)
    h.wait_lines(len(landed))  # and nothing more while it stays idle
    assert_once(h, set(landed))
    took = {name: decided[name] - landed[name] for name in landed}
    for name, d in h.by_name().items():
        assert (d["decision"], d["source"], d["action"]) == ("error", "decoder", "quarantined")
        assert d["reason"].startswith("unidentified" if "text" in name else "truncated"), d
        assert (q / name).exists() and not (h.inbox / name).exists()
        assert grace - 1.0 <= took[name] <= budget, (name, took[name])
    print(
        "\nW14: undecodable and settled, shipped settle_s + undecodable_grace_s = "
        f"{settle + grace:g} s: "
        + ", ".join(f"{n} {t:.2f} s" for n, t in sorted(took.items()))
        + " from landing (or from the start) to error + quarantine"
    )


def test_a_file_that_never_settles_is_an_error_after_the_timeout(harness):
    h = harness(never_settles_timeout_s=1.0)
    h.start()
    target = h.inbox / "growing.png"
    stop = threading.Event()

    def grow() -> None:
        while not stop.is_set():
            with open(target, "ab") as fh:
                fh.write(b"x" * 100)
            time.sleep(0.1)

    t = threading.Thread(target=grow)
    t.start()
    try:
        h.wait_lines(1, timeout=10, quiet=0)
    finally:
        stop.set()
        t.join()
    assert h.lines[0]["decision"] == "error" and h.lines[0]["reason"].startswith("unsettled")
    assert h.lines[0]["source"] == "watcher"


# -- W5: overflow, W10: observer death --------------------------------------------------


@pytest.mark.slow
def test_w5_overflow_warning_triggers_an_immediate_rescan(harness, monkeypatch):
    h = harness(probe_wait_s=600)  # every event lost would fail a probe (W15): not this case
    w = h.start()
    wait_until(lambda: w.stats().rescans >= 1, 10)  # the catch-up pass ran
    monkeypatch.setattr(w._handler, "dispatch", lambda event: None)  # every event lost
    n = 300
    for i in range(n):
        (h.inbox / f"lost_{i:03d}.png").write_bytes(image_bytes(5000 + i))
    time.sleep(3 * SETTLE)
    assert h.lines == [], "with every event lost, nothing is found before the rescan"
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost"
    )
    took = h.wait_lines(n, timeout=30)
    assert_once(h, {f"lost_{i:03d}.png" for i in range(n)})
    stats = w.stats()
    assert stats.overflows == 1 and stats.rescans >= 2
    print(
        f"\nW5 (simulated: events dropped, overflow warning logged): {n}/{n} scored exactly "
        f"once, recovered {took:.2f} s after the warning (settle {SETTLE} s)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("death", ["handler-raises", "emitter-stopped"])
def test_w10_dead_observer_is_restarted_and_a_rescan_closes_the_gap(harness, monkeypatch, death):
    h = harness()
    w = h.start()
    first = w._observer
    if death == "handler-raises":
        monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the expected death
        real = w._handler.dispatch

        def explode(event):
            w._handler.dispatch = real
            raise RuntimeError("handler bug")

        w._handler.dispatch = explode
    else:
        for emitter in list(first.emitters):
            emitter.stop()
    started = time.monotonic()
    n = 40
    for i in range(n):  # some land while the observer is dead: no event for them
        (h.inbox / f"gap_{i:03d}.png").write_bytes(image_bytes(6000 + i))
        time.sleep(0.01)
    h.wait_lines(n, timeout=20, quiet=0)
    took = time.monotonic() - started
    h.wait_lines(n)
    assert_once(h, {f"gap_{i:03d}.png" for i in range(n)})
    assert w.stats().restarts >= 1 and w._observer is not first and w._observer.is_alive()
    (h.inbox / "after.png").write_bytes(image_bytes(6999))
    h.wait_lines(n + 1)
    print(
        f"\nW10[{death}]: observer restarted ({w.stats().restarts}x), {n}/{n} files written "
        f"across the gap scored exactly once in {took:.2f} s; events flow again"
    )


# -- W8: directories, W9: delete / replace, W11: duplicates ------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_w8_directory_moved_in_and_nested_mkdir(harness, kind):
    h = harness(kind)
    h.start()
    pre = h.outside / "album"
    (pre / "inner").mkdir(parents=True)
    names = set()
    for i in range(200):
        rel = f"album/{'inner/' if i % 2 else ''}f_{i:03d}.png"
        (h.outside / rel).write_bytes(image_bytes(7000 + i))
        names.add(rel)
    started = time.monotonic()
    os.rename(pre, h.inbox / "album")
    deep = h.inbox / "a" / "b" / "c"
    deep.mkdir(parents=True)
    for i in range(10):
        (deep / f"n_{i}.png").write_bytes(image_bytes(7500 + i))
        names.add(f"a/b/c/n_{i}.png")
    h.wait_lines(len(names), timeout=30)
    took = time.monotonic() - started
    assert_once(h, names)
    print(
        f"\nW8[{kind}]: moved-in folder 200/200 and mkdir -p a/b/c + 10 writes 10/10 found, "
        f"each once, in {took:.2f} s"
    )


@pytest.mark.slow
def test_w9_replaced_file_is_rescored_and_deleted_files_leave_no_row(harness):
    h = harness()
    w = h.start()
    a = h.inbox / "a.png"
    a.write_bytes(image_bytes(1, red=20))
    h.wait_lines(1)
    first = h.lines[0]
    tmp = h.inbox / ".a.png.swap"
    tmp.write_bytes(image_bytes(2, red=240))  # a different image under the same name
    os.replace(tmp, a)
    h.wait_lines(2)
    second = h.lines[1]
    assert (first["decision"], second["decision"]) == ("sfw", "nsfw")
    assert first["sha256"] != second["sha256"]

    doomed = h.inbox / "doomed.png"
    doomed.write_bytes(image_bytes(3))
    time.sleep(SETTLE / 4)
    doomed.unlink()  # deleted before it settled
    a.unlink()  # deleted after it was scored
    time.sleep(4 * SETTLE)
    assert len(h.lines) == 2
    with Store.open(h.store_path, check=False) as store:
        assert store.files([str(doomed), str(a)]) == {}
        assert store.image(second["sha256"]) is not None, "the image and its score stay"
    assert w.idle()
    print(
        "\nW9: replaced file re-scored (new sha256, sfw -> nsfw); deleted before scoring: "
        "0 lines, 0 rows; deleted after scoring: its file row dropped"
    )


def test_w11_same_bytes_under_twenty_names_is_one_inference(harness):
    h = harness()
    h.start()
    data = image_bytes(11, red=230)
    for i in range(20):
        (h.outside / f"dup_{i:02d}.png").write_bytes(data)
        shutil.move(h.outside / f"dup_{i:02d}.png", h.inbox / f"dup_{i:02d}.png")
    h.wait_lines(20)
    assert_once(h, {f"dup_{i:02d}.png" for i in range(20)})
    assert h.scorer.frames == 1
    assert len({d["sha256"] for d in h.lines}) == 1
    assert len({d["probability"] for d in h.lines}) == 1
    assert sum(d["cached"] for d in h.lines) == 19
    with Store.open(h.store_path, check=False) as store:
        assert len(store.paths_for(h.lines[0]["sha256"])) == 20
    print("\nW11: 20 names, same bytes: 20 lines, 1 model inference, 20 file rows, 1 image")


# -- stop and restart --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_restart_picks_up_what_arrived_while_down_and_repeats_nothing(harness, kind):
    h = harness(kind)
    h.start()
    for i in range(10):
        (h.inbox / f"early_{i}.png").write_bytes(image_bytes(8000 + i))
    h.wait_lines(10, quiet=0)
    for i in range(150):  # a burst, stopped in the middle
        (h.inbox / f"mid_{i:03d}.png").write_bytes(image_bytes(8100 + i))
    wait_until(lambda: len(h.lines) > 12, 10)
    h.stop()
    before = len(h.lines)
    for i in range(20):  # while the watcher is down
        (h.inbox / f"down_{i}.png").write_bytes(image_bytes(8500 + i))
    h.start()
    names = (
        {f"early_{i}.png" for i in range(10)}
        | {f"mid_{i:03d}.png" for i in range(150)}
        | {f"down_{i}.png" for i in range(20)}
    )
    h.wait_lines(len(names), timeout=30)
    assert_once(h, names)
    assert h.scorer.frames == len(names), "nothing scored twice across the restart"
    logged = [json.loads(line) for line in h.log.read_text().splitlines()]
    assert Counter(d["path"] for d in logged) == Counter(d["path"] for d in h.lines)
    print(
        f"\nrestart[{kind}]: stopped after {before - 10} of a 150-file burst; after restart "
        f"{len(names)}/{len(names)} logged exactly once, {h.scorer.frames} inferences"
    )


def wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


@pytest.mark.slow
def test_no_catch_up_skips_files_already_there(harness):
    h = harness(catch_up=False)
    (h.inbox / "old.png").write_bytes(image_bytes(1))
    h.start()
    (h.inbox / "new.png").write_bytes(image_bytes(2))
    h.wait_lines(1)
    assert set(h.by_name()) == {"new.png"}
    (h.inbox / "old.png").write_bytes(image_bytes(3))  # changed: no longer what was there
    h.wait_lines(2)
    assert [Path(d["path"]).name for d in h.lines] == ["new.png", "old.png"]


# -- decisions, quarantine, release --------------------------------------------------------


def test_json_lines_schema_and_a_persons_label_outranks_the_model(harness):
    h = harness()
    labelled = image_bytes(21, red=250)  # the model says NSFW; a person said SFW
    with Store.open(h.store_path) as store:
        import hashlib

        store.set_labels([hashlib.sha256(labelled).hexdigest()], "sfw")
    h.start()
    (h.inbox / "labelled.png").write_bytes(labelled)
    (h.inbox / "red.png").write_bytes(image_bytes(22, red=250))
    (h.inbox / "blue.png").write_bytes(image_bytes(23, red=5))
    (h.outside / "junk.png").write_text("not an image")
    os.utime(h.outside / "junk.png", (1, 1))  # old: a decode failure is final at once
    os.rename(h.outside / "junk.png", h.inbox / "junk.png")
    h.wait_lines(4)
    by = h.by_name()
    for d in h.lines:
        assert set(d) == LINE_KEYS
        assert d["decision"] in ("nsfw", "sfw", "error") and d["action"] == "none"
        assert d["time"].endswith("Z") and d["model"] == "fake-watch"
    assert by["labelled.png"]["decision"] == "sfw" and by["labelled.png"]["source"] == "human"
    assert by["red.png"]["decision"] == "nsfw" and by["red.png"]["source"] == "model"
    assert by["blue.png"]["decision"] == "sfw" and 0 <= by["blue.png"]["probability"] < 0.5
    junk = by["junk.png"]
    assert junk["decision"] == "error" and junk["probability"] is None
    assert junk["source"] == "decoder" and junk["reason"].startswith("unidentified")
    logged = [json.loads(line) for line in h.log.read_text().splitlines()]
    assert logged == h.lines


@pytest.mark.slow
def test_corrupt_file_is_quarantined_and_the_watch_goes_on(harness):
    h = harness(quarantine=None)
    q = h.tmp / "quarantine"
    h.start(quarantine=str(q))
    (h.inbox / "sub").mkdir()
    truncated_jpeg(h.outside / "broken.jpg", 0.4)
    os.utime(h.outside / "broken.jpg", (1, 1))
    os.rename(h.outside / "broken.jpg", h.inbox / "sub" / "broken.jpg")
    h.wait_lines(1, quiet=0)
    for i in range(5):
        (h.inbox / f"ok_{i}.png").write_bytes(image_bytes(30 + i, red=10))
    (h.inbox / "hot.png").write_bytes(image_bytes(40, red=250))
    h.wait_lines(7)
    by = h.by_name()
    assert by["broken.jpg"]["decision"] == "error"
    assert by["broken.jpg"]["action"] == "quarantined"
    assert (q / "sub" / "broken.jpg").exists() and not (h.inbox / "sub" / "broken.jpg").exists()
    assert by["hot.png"]["action"] == "quarantined" and (q / "hot.png").exists()
    assert all(by[f"ok_{i}.png"]["action"] == "none" for i in range(5))
    assert sorted(p.name for p in h.inbox.iterdir() if p.is_file()) == [
        f"ok_{i}.png" for i in range(5)
    ]
    with Store.open(h.store_path, check=False) as store:
        moves = store.moves()
        assert {Path(m.dest).name for m in moves} == {"broken.jpg", "hot.png"}
        assert store.files([str(q / "hot.png")]), "the file row follows the file"


@pytest.mark.slow
def test_quarantine_never_overwrites_and_dry_run_moves_nothing(harness):
    h = harness()
    q = h.tmp / "quarantine"
    q.mkdir()
    (q / "hot.png").write_bytes(b"someone else's file")
    h.start(quarantine=str(q))
    (h.inbox / "hot.png").write_bytes(image_bytes(50, red=250))
    h.wait_lines(1, quiet=0)
    (h.inbox / "hot.png").write_bytes(image_bytes(51, red=251))  # the same name again
    h.wait_lines(2)
    assert [d["dest"] for d in h.lines] == [str(q / "hot-1.png"), str(q / "hot-2.png")]
    assert (q / "hot.png").read_bytes() == b"someone else's file"
    h.stop()

    h.lines.clear()
    h.start(quarantine=str(q), dry_run=True)
    (h.inbox / "hot.png").write_bytes(image_bytes(52, red=252))
    h.wait_lines(1)
    assert h.lines[0]["action"] == "would-quarantine"
    assert h.lines[0]["dest"] == str(q / "hot-3.png")
    assert (h.inbox / "hot.png").exists() and not (q / "hot-3.png").exists()


@pytest.mark.slow
def test_release_moves_a_file_back_and_records_it(harness):
    h = harness()
    q = h.tmp / "quarantine"
    h.start(quarantine=str(q))
    (h.inbox / "deep").mkdir()
    (h.inbox / "deep" / "hot.png").write_bytes(image_bytes(60, red=250))
    (h.inbox / "other.png").write_bytes(image_bytes(61, red=250))
    h.wait_lines(2, quiet=0)
    sha = h.by_name()["hot.png"]["sha256"]
    home = str(h.store_path.parent)
    result = CliRunner().invoke(
        cli_app, ["release", str(q / "deep" / "hot.png"), "--home", home], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    # The running watcher sees the file come back and decides it by the person's label.
    h.wait_lines(3)
    back_line = h.lines[2]
    assert back_line["path"] == str(h.inbox / "deep" / "hot.png")
    decided = (back_line["decision"], back_line["source"], back_line["action"])
    assert decided == ("sfw", "human", "none")
    assert (h.inbox / "deep" / "hot.png").exists() and not (q / "deep" / "hot.png").exists()
    h.stop()
    with Store.open(h.store_path, check=False) as store:
        moved = {Path(m.src).name: m for m in store.moves()}
        assert moved["hot.png"].released_at is not None
        assert moved["hot.png"].released_to == str(h.inbox / "deep" / "hot.png")
        assert store.current_labels([sha])[sha].label == "sfw"
        assert store.files([str(h.inbox / "deep" / "hot.png")])
        (h.inbox / "other.png").write_bytes(b"taken")  # the way back is occupied now
        origin, back = release(store, q / "other.png", label=None)
        assert (origin, back) == (str(h.inbox / "other.png"), str(h.inbox / "other-1.png"))
        assert (h.inbox / "other.png").read_bytes() == b"taken"
    again = CliRunner().invoke(cli_app, ["release", str(q / "other.png"), "--home", home])
    assert again.exit_code == 2 and "not a quarantined file" in again.output


# -- the screen ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_tui_pause_resume_and_enter_opens_the_review(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    Image.new("RGB", (24, 16), (250, 90, 160)).save(inbox / "first.png")
    app = watch_app(inbox, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.watch_screen
        assert isinstance(app.screen, WatchScreen)
        await wait_for(pilot, lambda: screen.table.row_count == 1)
        assert screen.stats.seen == 1 and screen.stats.nsfw == 1

        await pilot.press("p")
        status = screen.query_one("#watch-status", Static)
        await wait_for(pilot, lambda: "paused" in str(status.content))
        assert app.watcher.paused
        Image.new("RGB", (24, 16), (10, 90, 160)).save(inbox / "second.png")
        await pilot.pause(1.2)
        assert screen.table.row_count == 1, "nothing is scored while paused"
        await pilot.press("p")
        await wait_for(pilot, lambda: screen.table.row_count == 2)
        assert not app.watcher.paused
        assert screen.selected()["path"].endswith("second.png"), "newest first"

        await pilot.press("down")  # first.png
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, WatchReviewScreen))
        review = app.screen
        assert review.root == inbox
        await wait_for(pilot, lambda: review.review is not None and review.images.rows)
        await wait_for(pilot, lambda: review.images.current.path.endswith("first.png"))
        await pilot.press("w")
        assert app.screen is screen
    assert app.watcher._threads and not any(t.is_alive() for t in app.watcher._threads)


# -- the command --------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_headless_command_prints_json_lines_and_stops_cleanly(tmp_path, sig):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    Image.new("RGB", (24, 16), (250, 90, 160)).save(inbox / "there.png")
    home = resolve_home(tmp_path / "home")
    prepare_home(home)  # the active model id is "fake": the child swaps in the fake scorer
    code = CLI_WITH_FAKE_SCORER
    log = tmp_path / "w.jsonl"
    argv = [sys.executable, "-c", code, "watch", str(inbox), "--headless", "--log", str(log)]
    argv += ["--home", str(home.root), "settle_s=0.3"]
    repo = Path(__file__).parents[2]
    proc = subprocess.Popen(
        argv, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()
    try:
        first = json.loads(lines.get(timeout=60))
        assert first["path"].endswith("there.png") and first["model"] == FAKE_ID
        Image.new("RGB", (24, 16), (5, 90, 160)).save(inbox / "later.png")
        second = json.loads(lines.get(timeout=30))
        assert second["path"].endswith("later.png") and second["decision"] == "sfw"
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    reader.join(5)
    assert proc.returncode == 0, err
    assert lines.empty() and "2 decisions" in err
    assert len(log.read_text().splitlines()) == 2


def test_move_no_overwrite_across_file_systems_copies_without_overwriting(tmp_path, monkeypatch):
    import errno

    def no_link(src, dst, **kw):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "a.png").write_bytes(b"old")
    src = tmp_path / "a.png"
    src.write_bytes(b"new")
    os.utime(src, ns=(1, 1_000_000_000))
    dest = move_no_overwrite(str(src), str(tmp_path / "q" / "a.png"))
    assert dest == str(tmp_path / "q" / "a-1.png") and not src.exists()
    assert (tmp_path / "q" / "a.png").read_bytes() == b"old"
    assert Path(dest).read_bytes() == b"new" and os.stat(dest).st_mtime_ns == 1_000_000_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["watch", "{missing}", "--headless"], "folder not found"),
        (["watch", "{inbox}", "--headless", "settle_s=0"], "watch.settle_s: expected a number > 0"),
        (["watch", "{inbox}", "--threshold", "2"], "--threshold must be within [0, 1]"),
        (["watch", "{inbox}", "--quarantine", "{inbox}"], "quarantine folder must not be"),
        (["release", "{inbox}/nope.png"], "not a quarantined file"),
    ],
)
def test_commands_reject_bad_input_with_one_line(tmp_path, args, message):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    home = resolve_home(tmp_path / "home")
    prepare_home(home)
    argv = [a.format(missing=tmp_path / "nope", inbox=inbox) for a in args]
    # --quarantine equal to the folder is refused before any scorer or screen starts
    result = CliRunner().invoke(cli_app, [*argv, "--home", str(home.root)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
