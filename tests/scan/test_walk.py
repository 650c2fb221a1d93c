"""Every path a walk meets is accounted for, and nothing that is not a file is opened (N2)."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.imagegen import photo, save
from support.tui import CLI_WITH_FAKE_SCORER, RedScorer, prepare_home

from nsfw_tui.core import images
from nsfw_tui.core.decode_pool import decode_path
from nsfw_tui.core.errors import ImageError
from nsfw_tui.core.home import resolve_home
from nsfw_tui.core.report import decisions
from nsfw_tui.core.review import load_review
from nsfw_tui.core.scan import ScanOptions, scan_files, scan_folder
from nsfw_tui.core.walk import WalkIssue, walk_images

REPO = Path(__file__).resolve().parents[2]
INLINE = ScanOptions(workers=0, batch_size=8)

# name -> the reason its row must give ("" for the images that are scored)
EXPECTED = {
    "ok.jpg": "",
    "pipe.jpg": "not a regular file (a FIFO)",
    "sock.jpg": "not a regular file (a socket)",
    "null.jpg": "not a regular file (a character device)",
    "dir.jpg": "not a regular file (a folder)",
    "dir.jpg/inner.jpg": "",
    "loop.jpg": "symlink loop",
    "sub/up": "symlink loop",
    "sub/deep.jpg": "",
    "gone.jpg": "dangling symbolic link",
}


def odd_folder(root: Path, monkeypatch) -> Path:
    """A folder holding one of everything a walk can meet that is not an image file."""
    folder = root / "photos"
    save(photo((40, 30), 1), folder / "ok.jpg")
    save(photo((40, 30), 2), folder / "dir.jpg" / "inner.jpg")  # a folder with an image's name
    save(photo((40, 30), 3), folder / "sub" / "deep.jpg")
    os.mkfifo(folder / "pipe.jpg")
    os.mkfifo(folder / "notes")  # not an image's name: not looked at, like notes.txt
    monkeypatch.chdir(folder)  # a socket's path is limited to about 100 bytes
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind("sock.jpg")
    monkeypatch.chdir(root)
    os.symlink("/dev/null", folder / "null.jpg")
    os.symlink("loop.jpg", folder / "loop.jpg")  # a link to itself
    os.symlink("..", folder / "sub" / "up")  # a folder that holds itself
    os.symlink("nowhere.jpg", folder / "gone.jpg")
    return folder


def rows_by_name(rows: list[dict], folder: Path) -> dict[str, dict]:
    return {os.path.relpath(r["image_path"], folder): r for r in rows}


def assert_accounted(rows: dict[str, dict]) -> None:
    assert set(rows) == set(EXPECTED), f"extra {set(rows) - set(EXPECTED)}"
    for name, reason in EXPECTED.items():
        row = rows[name]
        if reason:
            assert reason in row["error"], (name, row)
            assert row["probability"] in (None, "") and row["prediction"] in (None, ""), row
        else:
            assert not row["error"] and row["prediction"] in (0, 1, "0", "1"), (name, row)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_n2_every_odd_entry_is_one_row_with_its_reason_and_the_scan_never_hangs(
    tmp_path, monkeypatch
):
    folder = odd_folder(tmp_path, monkeypatch)
    home = resolve_home(tmp_path / "home")
    prepare_home(home)
    for out in (tmp_path / "first.json", tmp_path / "second.csv"):  # the second from the cache
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                CLI_WITH_FAKE_SCORER,
                "scan",
                str(folder),
                "-o",
                str(out),
                "--home",
                str(home.root),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        if out.suffix == ".json":
            rows = json.loads(out.read_text())
        else:
            with out.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
        assert_accounted(rows_by_name(rows, folder))
        assert "7 unreadable" in done.stdout, done.stdout
        assert "not scored" in done.stderr and "pipe.jpg" in done.stderr
        print(f"\nN2: {out.suffix} scan of {len(rows)} entries in {took:.1f} s, none hung")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_n2_the_review_screen_gets_the_same_rows(tmp_path, monkeypatch, store):
    folder = odd_folder(tmp_path, monkeypatch)
    review, pending = load_review(folder, store, "fake", 0.5)
    by = {r.rel: r for r in review.rows}
    assert set(by) == set(EXPECTED)
    for name, reason in EXPECTED.items():
        if reason:
            assert reason in by[name].error and by[name].probability is None
            assert by[name].status == "error" and str(folder / name) not in pending
        else:
            assert by[name].error is None and str(folder / name) in pending


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_n2_a_fifo_is_never_opened(tmp_path, monkeypatch, store):
    folder = tmp_path / "p"
    save(photo((40, 30)), folder / "ok.jpg")
    fifo = folder / "pipe.jpg"
    os.mkfifo(fifo)
    opened: list[str] = []
    real_open = os.open

    def watching_open(path, *args, **kwargs):
        opened.append(os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", watching_open)
    # The walk, the cache's stat check and the decoder (inline, so this process's os.open).
    res = scan_folder(folder, RedScorer(), store, INLINE)
    assert {Path(i.path).name: i.error for i in res.items if i.error} == {
        "pipe.jpg": "not a regular file (a FIFO)"
    }
    res = scan_files([str(fifo)], RedScorer(), store, INLINE)  # handed over on its own
    assert res.items[0].error == "not a regular file (a FIFO)"
    for read in (images.read_bytes, images.hash_file, images.load_image):  # hashing, decoding
        with pytest.raises(ImageError, match="not a regular file"):
            read(fifo)
    assert str(fifo) not in opened
    assert str(folder / "ok.jpg") in opened  # the watch on os.open did see the real reads


def test_n2_a_file_gone_between_the_walk_and_its_read_is_a_missing_row(tmp_path, store):
    folder = tmp_path / "p"
    for i in range(3):
        save(photo((40, 30), i), folder / f"img_{i}.jpg")
    paths = list(walk_images(folder))
    os.unlink(paths[0])  # between the walk and the stat

    def vanishing(path, spec, use_draft, max_frames):
        if path == paths[1]:
            os.unlink(path)  # between the stat and the decode
        return decode_path(path, spec, use_draft, max_frames)

    opts = ScanOptions(workers=0, batch_size=8, decoder=vanishing)
    res = scan_files(paths, RedScorer(), store, opts)
    by = {Path(i.path).name: i for i in res.items}
    assert len(res.items) == 3 and res.errors == 2
    assert (by["img_0.jpg"].error_kind, by["img_0.jpg"].error) == ("missing", "file not found")
    assert (by["img_1.jpg"].error_kind, by["img_1.jpg"].error) == ("missing", "file not found")
    assert by["img_2.jpg"].probability is not None
    rows = decisions(res.items, store, 0.5)
    assert [r["prediction"] for r in rows] == [None, None, 0]


def test_n2_permission_denied_is_a_row(tmp_path, store, monkeypatch):
    # Root reads any file whatever its mode, so the OS's answer is given by hand here (as in
    # test_images.py); test_unreadable_file_and_folder in test_scan.py uses chmod 000.
    folder = tmp_path / "p"
    locked = save(photo((40, 30)), folder / "locked.jpg")
    save(photo((40, 30), 1), folder / "ok.jpg")
    (folder / "closed").mkdir()
    real_open, real_scandir = os.open, os.scandir

    def deny_open(path, *args, **kwargs):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    def deny_scandir(path="."):
        if os.fspath(path) == str(folder / "closed"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "open", deny_open)
    monkeypatch.setattr(os, "scandir", deny_scandir)
    res = scan_folder(folder, RedScorer(), store, INLINE)
    by = {Path(i.path).name: i for i in res.items}
    assert set(by) == {"locked.jpg", "ok.jpg", "closed"}
    assert by["locked.jpg"].error_kind == "unreadable"
    assert "permission denied" in by["locked.jpg"].error
    assert by["closed"].error == "cannot list folder: permission denied"
    assert res.walk_errors == [
        WalkIssue(str(folder / "closed"), "unreadable", "cannot list folder: permission denied")
    ]


def test_n2_folders_that_hold_themselves_are_rows_and_second_links_are_not(tmp_path):
    root = tmp_path / "tree"
    save(photo((40, 30)), root / "a" / "x.jpg")
    os.symlink(root / "a", root / "b")  # a second link: its files were told under a/
    os.symlink(root, root / "a" / "top")  # holds itself, through an absolute link
    os.symlink(".", root / "a" / "here.jpg")  # holds itself, named like an image
    (root / "c.png").mkdir()
    issues: list[WalkIssue] = []
    found = list(walk_images(root, errors=issues))
    assert found == [str(root / "a" / "x.jpg")]
    assert sorted((os.path.relpath(i.path, root), i.reason) for i in issues) == [
        ("a/here.jpg", "symlink loop"),
        ("a/top", "symlink loop"),
        ("c.png", "not a regular file (a folder)"),
    ]
    flat: list[WalkIssue] = []
    assert list(walk_images(root, recursive=False, errors=flat)) == []
    assert [(Path(i.path).name, i.reason) for i in flat] == [
        ("c.png", "not a regular file (a folder)")
    ]
