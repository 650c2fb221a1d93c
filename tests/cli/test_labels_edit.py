"""`labels remove`, `labels undo` and `labels --imagefolder` into a folder it wrote before."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

from support.imagegen import photo, photo_folder, save
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core.store import Store

runner = CliRunner()


def run(*args: str, home: Path, answer: str | None = None):
    return runner.invoke(app, [*args, "--home", str(home)], input=answer, catch_exceptions=False)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def labels_now(home: Path, *paths: Path) -> list[str | None]:
    with Store.open(home / "store.db") as store:
        current = store.current_labels()
    return [current[sha(p)].label if sha(p) in current else None for p in paths]


def out_lines(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line]


def test_remove_a_file_and_a_folder_keeps_the_history(tmp_path, home):
    one = photo_folder(tmp_path / "one", 2)
    two = photo_folder(tmp_path / "two", 2, size=(200, 150))
    assert run("import", str(tmp_path / "one"), "--label", "nsfw", home=home).exit_code == 0
    assert run("import", str(tmp_path / "two"), "--label", "sfw", home=home).exit_code == 0

    result = run("labels", "remove", str(one[0]), home=home)
    assert result.exit_code == 0, result.output
    assert out_lines(result) == ["removed the labels of 1 images (0 had none, 0 skipped)"]
    assert labels_now(home, *one, *two) == [None, "nsfw", "sfw", "sfw"]
    with Store.open(home / "store.db") as store:
        history = store.label_history(sha(one[0]))
    assert [(e.label, e.source) for e in history] == [("nsfw", "import"), (None, "human")]

    result = run("labels", "remove", str(tmp_path / "two"), str(one[0]), home=home)
    assert result.exit_code == 0, result.output
    assert out_lines(result) == ["removed the labels of 2 images (1 had none, 0 skipped)"]
    assert labels_now(home, *one, *two) == [None, "nsfw", None, None]
    assert all(p.exists() for p in [*one, *two])  # labels go, files stay


def test_remove_a_path_that_is_not_there_is_one_line(tmp_path, home):
    result = run("labels", "remove", str(tmp_path / "nope.jpg"), home=home)
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"error: not found: {tmp_path / 'nope.jpg'}"]


def test_export_options_do_not_go_with_a_subcommand(tmp_path, home):
    result = run("labels", "-o", str(tmp_path / "x.csv"), "undo", home=home)
    assert result.exit_code == 2
    assert result.output.splitlines() == ["error: -o and --imagefolder do not go with `undo`"]


def two_imports(tmp_path: Path, home: Path) -> tuple[list[Path], Path]:
    """img_000, img_001 imported as sfw, then their folder (with a new img_002) as nsfw."""
    old = photo_folder(tmp_path / "p", 2)
    assert run("import", str(tmp_path / "p"), "--label", "sfw", home=home).exit_code == 0
    new = save(photo((64, 48), seed=9), tmp_path / "p" / "img_002.jpg")
    assert run("import", str(tmp_path / "p"), "--label", "nsfw", home=home).exit_code == 0
    return [*old, new], home


def newest_header(home: Path, n: int) -> str:
    with Store.open(home / "store.db") as store:
        batch = store.newest_batch()
    when = datetime.fromtimestamp(batch.created_at).strftime("%Y-%m-%d %H:%M:%S")
    return f"the newest label batch: {n} images, by `import`, {when}"


def test_undo_of_an_import_restores_the_earlier_labels(tmp_path, home):
    files, _ = two_imports(tmp_path, home)
    assert labels_now(home, *files) == ["nsfw", "nsfw", "nsfw"]
    header = newest_header(home, 3)

    result = run("labels", "undo", "--yes", home=home)
    assert result.exit_code == 0, result.output
    assert out_lines(result) == [
        header,
        f"  {files[0]}: nsfw -> sfw",
        f"  {files[1]}: nsfw -> sfw",
        f"  {files[2]}: nsfw -> no label",
        "restored the earlier labels of 3 images",
    ]
    assert labels_now(home, *files) == ["sfw", "sfw", None]

    # the next undo steps one batch further back: the first import
    result = run("labels", "undo", "-y", home=home)
    assert result.exit_code == 0, result.output
    assert out_lines(result)[-1] == "restored the earlier labels of 2 images"
    assert labels_now(home, *files) == [None, None, None]

    result = run("labels", "undo", "--yes", home=home)
    assert result.exit_code == 1
    assert result.output.splitlines() == ["error: nothing to undo"]
    with Store.open(home / "store.db") as store:
        history = store.label_history(sha(files[0]))
    assert [(e.label, e.source) for e in history] == [
        ("sfw", "import"),
        ("nsfw", "import"),
        ("sfw", "undo"),
        (None, "undo"),
    ]


def test_undo_asks_first_and_no_changes_nothing(tmp_path, home):
    files, _ = two_imports(tmp_path, home)
    result = run("labels", "undo", home=home, answer="n\n")
    assert result.exit_code == 1
    assert f"  {files[2]}: nsfw -> no label" in out_lines(result)
    # the runner echoes the answer to stdout, not after the question on stderr
    assert result.stderr == "Undo it? [y/N]:error: nothing was changed\n"
    assert labels_now(home, *files) == ["nsfw", "nsfw", "nsfw"]

    result = run("labels", "undo", home=home, answer="y\n")
    assert result.exit_code == 0, result.output
    assert labels_now(home, *files) == ["sfw", "sfw", None]


def test_undo_with_nothing_to_undo_says_so(home):
    result = run("labels", "undo", home=home)
    assert result.exit_code == 1
    assert result.output.splitlines() == ["error: nothing to undo"]


def test_undo_takes_back_a_remove(tmp_path, home):
    files = photo_folder(tmp_path / "p", 2)
    run("import", str(tmp_path / "p"), "--label", "nsfw", home=home)
    run("labels", "remove", str(tmp_path / "p"), home=home)
    result = run("labels", "undo", "--yes", home=home)
    assert result.exit_code == 0, result.output
    assert "by a person (review screen, release or labels remove)" in out_lines(result)[0]
    assert out_lines(result)[1] == f"  {files[0]}: no label -> nsfw"
    assert labels_now(home, *files) == ["nsfw", "nsfw"]


def test_imagefolder_again_takes_out_relabelled_files_and_keeps_foreign_ones(tmp_path, home):
    nsfw = photo_folder(tmp_path / "data" / "nsfw", 3)
    assert run("import", str(tmp_path / "data"), home=home).exit_code == 0
    dest = tmp_path / "curated"
    first = run("labels", "--imagefolder", str(dest), home=home)
    assert first.exit_code == 0, first.output
    assert out_lines(first) == [
        f"wrote 3 NSFW and 0 SFW images under {dest} (3 hard links, 0 copies, "
        "0 labelled images no longer on disk)"
    ]
    (dest / "nsfw" / "mine.txt").write_text("a note of my own")
    save(photo((40, 30), seed=77), dest / "sfw" / "extra.jpg")
    # img_000 relabelled sfw, img_001's label removed, img_002 unchanged
    with Store.open(home / "store.db") as store:
        store.set_labels([sha(nsfw[0])], "sfw")
    assert run("labels", "remove", str(nsfw[1]), home=home).exit_code == 0

    result = run("labels", "--imagefolder", str(dest), home=home)
    assert result.exit_code == 0, result.output
    assert out_lines(result) == [
        f"wrote 1 NSFW and 1 SFW images under {dest} (1 hard links, 0 copies, "
        "0 labelled images no longer on disk)",
        "took out 2 files whose label changed or was removed: nsfw/img_000.jpg, nsfw/img_001.jpg",
        "left alone 2 files that nsfw-tui did not write: nsfw/mine.txt, sfw/extra.jpg",
    ]
    assert sorted(os.listdir(dest / "nsfw")) == ["img_002.jpg", "mine.txt"]
    assert sorted(os.listdir(dest / "sfw")) == ["extra.jpg", "img_000.jpg"]
    assert all(p.exists() for p in nsfw)  # only the links in DIR went


def test_imagefolder_leaves_a_file_it_wrote_that_was_changed_since(tmp_path, home):
    [img] = photo_folder(tmp_path / "data" / "nsfw", 1)
    run("import", str(tmp_path / "data"), home=home)
    dest = tmp_path / "curated"
    run("labels", "--imagefolder", str(dest), home=home)
    written = dest / "nsfw" / img.name
    written.unlink()  # replaced by the person's own file of that name
    save(photo((40, 30), seed=5), written)
    run("labels", "remove", str(img), home=home)

    result = run("labels", "--imagefolder", str(dest), home=home)
    assert result.exit_code == 0, result.output
    assert out_lines(result)[1:] == [
        f"left alone 1 files that nsfw-tui did not write: nsfw/{img.name}"
    ]
    assert written.exists() and not os.path.samefile(written, img)
