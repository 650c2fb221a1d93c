"""A watch meets odd names and odd entries: names are bytes (N1), nothing passes unseen (N2)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.tui import CLI_WITH_FAKE_SCORER
from support.watch import Harness, image_bytes
from typer.testing import CliRunner

from nsfw_tui.cli import app as cli_app
from nsfw_tui.core.errors import NsfwTuiError
from nsfw_tui.core.store import Store
from nsfw_tui.core.watch.log import DecisionLog

REPO = Path(__file__).resolve().parents[2]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path)
    yield h
    h.stop()


@pytest.mark.slow
def test_n1_raw_and_escaped_names_are_two_keys_and_release_restores_the_exact_bytes(harness):
    h = harness
    q = h.tmp / "quarantine"
    inbox, quarantine = os.fsencode(h.inbox), os.fsencode(q)
    raw = inbox + b"/hot\xff.png"  # the byte 0xff
    literal = inbox + b"/hot\\xff.png"  # the four characters \, x, f, f
    folder = inbox + b"/d\xfe"  # a folder whose own name is not UTF-8
    contents = {
        raw: image_bytes(1, red=250),
        literal: image_bytes(2, red=251),
        folder + b"/deep.png": image_bytes(3, red=252),
    }
    h.start(quarantine=str(q))
    os.mkdir(folder)
    for name, data in contents.items():
        with open(name, "wb") as fh:
            fh.write(data)
    h.wait_lines(3)

    # Two names that read the same are two lines; only the one that is not UTF-8 carries
    # its bytes, and the log holds exactly what was told.
    logged = [json.loads(line) for line in h.log.read_text(encoding="utf-8").splitlines()]
    assert logged == h.lines and len(logged) == 3
    by_b64 = {d.get("path_b64"): d for d in logged}
    shown = os.fsdecode(literal)
    assert by_b64[b64(raw)]["path"] == by_b64[None]["path"] == shown
    assert by_b64[None]["dest"] == os.fsdecode(quarantine + b"/hot\\xff.png")
    assert "dest_b64" not in by_b64[None]
    assert by_b64[b64(raw)]["dest_b64"] == b64(quarantine + b"/hot\xff.png")
    deep = by_b64[b64(folder + b"/deep.png")]
    assert deep["dest_b64"] == b64(quarantine + b"/d\xfe/deep.png")
    assert all(d["action"] == "quarantined" for d in logged)

    # Each file lies in the quarantine under its own bytes, with its own move and row.
    for name, data in contents.items():
        dest = quarantine + name[len(inbox) :]
        with open(dest, "rb") as fh:
            assert fh.read() == data
        assert not os.path.lexists(name)
    with Store.open(h.store_path, check=False) as store:
        moves = {os.fsencode(m.src): os.fsencode(m.dest) for m in store.moves()}
        assert moves == {name: quarantine + name[len(inbox) :] for name in contents}
        assert len(store.files([os.fsdecode(d) for d in moves.values()])) == 3

    # A restart reads the log's tail by those bytes: nothing is logged twice.
    h.stop()
    h.start(quarantine=str(q))
    h.wait_lines(3)
    assert len(h.lines) == 3 and len(h.log.read_text(encoding="utf-8").splitlines()) == 3

    # `nsfw-tui release` with the raw name on its command line, as a shell passes it.
    home = str(h.store_path.parent)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI_WITH_FAKE_SCORER,
            "release",
            quarantine + b"/hot\xff.png",
            "--home",
            home,
        ],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"hot\\xff.png" in done.stdout  # told as text
    with open(raw, "rb") as fh:
        assert fh.read() == contents[raw]  # back under its exact name
    assert not os.path.lexists(literal), "the file literally named \\xff stays in quarantine"
    assert os.path.exists(quarantine + b"/hot\\xff.png")

    # And by the log's dest_b64, for a name a terminal cannot type.
    result = CliRunner().invoke(
        cli_app, ["release", "--b64", deep["dest_b64"], "--home", home], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    with open(folder + b"/deep.png", "rb") as fh:
        assert fh.read() == contents[folder + b"/deep.png"]

    # The running watcher sees both come back and decides them by the person's label, each
    # line naming its file exactly.
    h.wait_lines(5)
    back = {d["path_b64"]: d for d in h.lines[3:]}
    assert set(back) == {b64(raw), b64(folder + b"/deep.png")}
    assert all((d["decision"], d["source"]) == ("sfw", "human") for d in back.values())
    with Store.open(h.store_path, check=False) as store:
        released = {os.fsencode(m.released_to) for m in store.moves() if m.released_to}
        assert released == {raw, folder + b"/deep.png"}
        assert set(store.files([os.fsdecode(raw), os.fsdecode(literal)])) == {os.fsdecode(raw)}


def test_n1_release_refuses_a_b64_that_is_not_one(tmp_path):
    result = CliRunner().invoke(
        cli_app, ["release", "--b64", "not base64!", "--home", str(tmp_path / "home")]
    )
    assert result.exit_code == 2 and "not base64" in result.output


# -- N2: what is not a file in a watched folder is an error line, never silence -----------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_n2_odd_entries_in_a_watched_folder_get_one_error_line_each(harness):
    h = harness
    q = h.tmp / "quarantine"
    os.mkfifo(h.inbox / "early.png")  # there before the start: found by the catch-up walk
    os.symlink("nowhere.png", h.inbox / "gone.png")
    h.start(quarantine=str(q))
    os.mkfifo(h.inbox / "pipe.png")  # arrives while watching: found by its event
    (h.inbox / "dir.png").mkdir()
    (h.inbox / "dir.png" / "inner.png").write_bytes(image_bytes(7, red=10))
    os.symlink("loop.png", h.inbox / "loop.png")
    (h.inbox / "ok.png").write_bytes(image_bytes(8, red=10))
    h.wait_lines(7)
    h.watcher.request_rescan()  # a rescan finds them all again and tells none twice
    h.wait_lines(7)
    by = {os.path.relpath(d["path"], h.inbox): d for d in h.lines}
    assert len(h.lines) == len(by) == 7, [d["path"] for d in h.lines]
    reasons = {
        "early.png": "not a regular file (a FIFO)",
        "pipe.png": "not a regular file (a FIFO)",
        "gone.png": "dangling symbolic link",
        "loop.png": "symlink loop",
        "dir.png": "not a regular file (a folder)",
    }
    for name, reason in reasons.items():
        d = by[name]
        assert d["decision"] == "error" and d["probability"] is None, d
        assert reason in d["reason"], d
    assert by["dir.png"]["action"] == "quarantine-failed"  # a folder is never moved
    assert (h.inbox / "dir.png" / "inner.png").exists()
    for name in ("early.png", "pipe.png", "gone.png", "loop.png"):
        assert by[name]["action"] == "quarantined" and os.path.lexists(q / name)
    assert by["ok.png"]["decision"] == "sfw" and by["dir.png/inner.png"]["decision"] == "sfw"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_n2_a_fifo_given_as_the_log_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "log.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(NsfwTuiError, match="not a regular file"):
        DecisionLog(str(fifo))
