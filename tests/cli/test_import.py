"""`nsfw-tui import` labels only whole images: unreadable and incomplete files are skipped (P12)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from support.imagegen import photo_folder, zero_tailed
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core import labels as labels_module
from nsfw_tui.core.labels import import_folders, plan_import
from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.core.scan import ScanOptions, scan_folder
from nsfw_tui.core.scorers import ScoreBatch
from nsfw_tui.core.store import Store

runner = CliRunner()


class GreyScorer:
    """A fake model: every frame scores its mean brightness."""

    id = "fake-grey"
    preprocessing = IMAGENET(32)
    default_threshold = 0.5

    def score(self, pixels: np.ndarray) -> ScoreBatch:
        return ScoreBatch(pixels.astype(np.float32).mean(axis=(1, 2, 3)) / 255.0, None)


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The paths import reads from disk (a spy on the read; the read itself still runs)."""
    seen: list[str] = []
    real = labels_module.read_bytes

    def spy(path):
        seen.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(labels_module, "read_bytes", spy)
    return seen


def three_good_two_broken(folder: Path) -> list[Path]:
    photo_folder(folder, 3)
    return [
        zero_tailed(folder / "partial.jpg", 0.7),
        zero_tailed(folder / "partial.png", 0.4, seed=2),
    ]


def test_import_labels_the_good_files_and_skips_the_broken_with_reasons(tmp_path, home):
    three_good_two_broken(tmp_path / "in")
    result = runner.invoke(
        app, ["import", str(tmp_path / "in"), "--label", "nsfw", "--home", str(home)]
    )
    assert result.exit_code == 0, result.output
    assert "labelled 3 NSFW and 0 SFW images" in result.output
    assert "2 skipped" in result.output
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 2
    for name in ("partial.jpg", "partial.png"):
        [line] = [s for s in skipped if name in s]
        assert "truncated: " in line and "zeros" in line
    with Store.open(home / "store.db") as store:
        assert len(store.current_labels()) == 3
        rows = store.files([str(tmp_path / "in" / "partial.jpg")])
        assert rows[str(tmp_path / "in" / "partial.jpg")].error_kind == "truncated"


def test_a_second_import_reads_nothing_and_still_skips_the_broken(tmp_path, store, reads):
    three_good_two_broken(tmp_path / "in")
    plan = plan_import(tmp_path / "in", "sfw")
    first = import_folders(store, plan)
    assert first.labelled["sfw"] == 3 and len(first.errors) == 2
    assert len(reads) == 5
    reads.clear()
    second = import_folders(store, plan)
    assert reads == []  # every file unchanged: the store's verdicts are reused
    assert second.unchanged == 3 and sorted(p for p, _ in second.errors) == sorted(
        p for p, _ in first.errors
    )


def test_import_reuses_a_scan_and_rechecks_a_file_that_changed(tmp_path, store, reads):
    folder = tmp_path / "in"
    broken = three_good_two_broken(folder)
    scan = scan_folder(folder, GreyScorer(), store, ScanOptions(workers=0))
    assert scan.scored == 3 and scan.errors == 2
    report = import_folders(store, plan_import(folder, "nsfw"))
    assert reads == [] and report.labelled["nsfw"] == 3
    assert {os.path.basename(p) for p, _ in report.errors} == {"partial.jpg", "partial.png"}

    # the download finished: the same name now holds a whole image, so it is read and labelled
    photo_folder(tmp_path / "done", 1)
    os.replace(tmp_path / "done" / "img_000.jpg", broken[0])
    os.utime(broken[0], ns=(1, 1))
    report = import_folders(store, plan_import(folder, "nsfw"))
    assert reads == ["partial.jpg"]
    assert report.labelled["nsfw"] == 0 and report.unchanged == 3  # same content as img_000
    assert [os.path.basename(p) for p, _ in report.errors] == ["partial.png"]


def test_text_named_like_an_image_is_not_labelled(tmp_path, store):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.jpg").write_text("not an image at all\n")
    report = import_folders(store, plan_import(tmp_path / "in", "nsfw"))
    assert report.labelled["nsfw"] == 0
    assert report.errors == [
        (str(tmp_path / "in" / "notes.jpg"), "unidentified: not a recognised image or video file")
    ]
