"""`scan` and `import` on a store from before the completeness check (schema 5): what it
cached for a file is reused only once the file was read again (P12)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from support.legacy import legacy_photos, schema_5_store, sha_of
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core import images
from nsfw_tui.core import labels as labels_module
from nsfw_tui.core.labels import import_folders, plan_import
from nsfw_tui.core.scorers import BUILTIN_ID
from nsfw_tui.core.store import SCHEMA_VERSION, Store

runner = CliRunner()
OLD_WHOLE = 0.123456  # the built-in model gives no such score to these photos


@pytest.fixture
def folder(tmp_path, home) -> Path:
    """``photos/``: a whole and a zero-tailed JPEG both scored SFW by the built-in model, and
    a PNG refused then, as a schema-5 store at ``home`` recorded them."""
    folder = tmp_path / "photos"
    whole, partial, broken = legacy_photos(folder)
    home.mkdir()
    schema_5_store(
        home / "store.db",
        BUILTIN_ID,
        {whole: OLD_WHOLE, partial: 0.01},
        errors={broken: ("truncated", "PNG file is truncated")},
    )
    return folder


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """The files decoded inline (``scan.workers=0``), by their size in bytes."""
    seen: list[int] = []
    real = images.load_image

    def spy(source, **kwargs):
        seen.append(len(source))
        return real(source, **kwargs)

    monkeypatch.setattr(images, "load_image", spy)
    return seen


def scan_rows(folder: Path, home: Path, out: Path) -> tuple[str, dict[str, dict]]:
    args = ["scan", str(folder), "-o", str(out), "scan.workers=0", "--home", str(home)]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with open(out, newline="") as fh:
        return result.output, {Path(r["image_path"]).name: r for r in csv.DictReader(fh)}


def test_cli_scan_refuses_a_zero_tailed_file_scored_before_and_keeps_a_whole_ones_score(
    folder, home, tmp_path, decodes
):
    out = tmp_path / "out.csv"
    output, rows = scan_rows(folder, home, out)
    assert sorted(decodes) == sorted(
        os.path.getsize(folder / n) for n in ("whole.jpg", "partial.jpg")
    )
    assert "0 scored" in output  # the whole file's score is the one cached before
    partial = rows["partial.jpg"]
    assert partial["probability"] == "" and partial["class_name"] == ""
    assert partial["error"].startswith("truncated: ") and "zeros" in partial["error"]
    assert float(rows["whole.jpg"]["probability"]) == OLD_WHOLE
    assert rows["broken.png"]["error"].startswith("truncated")

    decodes.clear()
    again_output, again = scan_rows(folder, home, out)
    assert decodes == [] and "3 reused from the cache, 0 scored" in again_output
    assert again == rows
    with Store.open(home / "store.db") as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.predictions(BUILTIN_ID) == {sha_of(folder / "whole.jpg"): OLD_WHOLE}


def test_import_reads_an_unchecked_file_again_and_skips_it_when_zero_tailed(folder, home):
    seen: list[str] = []
    real = labels_module.read_bytes

    def spy(path):
        seen.append(os.path.basename(path))
        return real(path)

    with Store.open(home / "store.db") as store, pytest.MonkeyPatch.context() as mp:
        mp.setattr(labels_module, "read_bytes", spy)
        report = import_folders(store, plan_import(folder, "sfw"))
        assert sorted(seen) == ["partial.jpg", "whole.jpg"]  # the refused PNG stays refused
        assert report.labelled["sfw"] == 1
        skipped = {os.path.basename(p): why for p, why in report.errors}
        assert set(skipped) == {"partial.jpg", "broken.png"}
        assert skipped["partial.jpg"].startswith("truncated: ")
        assert set(store.current_labels()) == {sha_of(folder / "whole.jpg")}
        rewritten = {os.path.basename(r.path) for r in store.files_seen_since(str(folder), 2.0)}
        assert rewritten == {"partial.jpg"}  # the whole file's row is as it was
        seen.clear()
        again = import_folders(store, plan_import(folder, "sfw"))
        assert seen == [] and again.unchanged == 1 and len(again.errors) == 2


def test_cli_import_label_skips_the_zero_tailed_file(folder, home):
    args = ["import", str(folder), "--label", "sfw", "--home", str(home)]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "labelled 0 NSFW and 1 SFW images" in result.output and "2 skipped" in result.output
    [line] = [s for s in result.output.splitlines() if "partial.jpg" in s]
    assert line.startswith("skipped ") and "truncated: " in line and "zeros" in line
    with Store.open(home / "store.db") as store:
        assert set(store.current_labels()) == {sha_of(folder / "whole.jpg")}
        assert store.files([str(folder / "partial.jpg")])[
            str(folder / "partial.jpg")
        ].error_kind == ("truncated")
