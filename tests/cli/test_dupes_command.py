"""`nsfw-tui dupes`: groups of exact and near copies under a folder, as a table or CSV."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from support.imagegen import save, scene, variant_folder, variants
from support.tui import RedScorer, prepare_home, solid
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core.home import resolve_home

runner = CliRunner()


def run(*args: str, home: Path):
    return runner.invoke(app, [*args, "--home", str(home)], catch_exceptions=False)


def test_dupes_writes_one_csv_group_per_scene(tmp_path, home):
    folder = tmp_path / "photos"
    truth = variant_folder(folder, range(3000, 3003))
    shutil.copy(folder / "s3000.png", folder / "copy_of_s3000.png")
    save(scene(3999), folder / "alone.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    out = tmp_path / "groups.csv"
    result = run("dupes", str(folder), "-o", str(out), home=home)
    assert result.exit_code == 0, result.output
    assert "3 groups of duplicates (16 files)" in result.output
    assert "1 file could not be read" in result.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["group", "size", "image_path", "sha256", "similar_by"]
    groups: dict[str, set[str]] = {}
    for row in rows:
        groups.setdefault(row["group"], set()).add(Path(row["image_path"]).name)
        assert row["similar_by"] == "features"
    expected = {seed: {p.name for p, s in truth.items() if s == seed} for seed in range(3000, 3003)}
    expected[3000].add("copy_of_s3000.png")
    assert sorted(map(sorted, groups.values())) == sorted(map(sorted, expected.values()))
    assert {row["size"] for row in rows if row["group"] == "1"} == {"6"}  # largest first


def test_dupes_prints_a_table_and_reuses_the_cache(tmp_path, home):
    folder = tmp_path / "photos"
    variant_folder(folder, range(3100, 3102))
    first = run("dupes", str(folder), home=home)
    again = run("dupes", str(folder), "threshold=0.999", home=home)
    assert first.exit_code == 0 and again.exit_code == 0
    assert "s3100_resize.png" in first.output and "2 groups of duplicates" in first.output
    assert "cosine >= 0.999" in again.output  # the override reached the grouping


def test_dupes_bad_input_gets_one_clear_line(tmp_path, home):
    folder = tmp_path / "photos"
    folder.mkdir()
    cases = [
        (["dupes", str(tmp_path / "missing")], "error:"),
        (["dupes", str(folder), "-o", str(tmp_path / "g.json")], "--output must end in .csv"),
        (["dupes", str(folder), "-o", str(tmp_path / "no" / "g.csv")], "does not exist"),
        (["dupes", str(folder), "threshold=2"], "dupes.threshold"),
    ]
    for args, text in cases:
        result = run(*args, home=home)
        assert result.exit_code == 2, (args, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and text in errors[0], (args, result.output)


def test_a_model_without_features_groups_by_perceptual_hash(tmp_path, monkeypatch):
    """The active model gives no features: the files are decoded for their hash instead."""
    import nsfw_tui.models.registry as registry

    home = resolve_home(tmp_path / "home")
    prepare_home(home)  # the fake model, which has no features, is the active one
    monkeypatch.setattr(registry, "load_scorer", lambda row, **kw: RedScorer())
    folder = tmp_path / "photos"
    for seed in (3200, 3201):
        base = scene(seed)
        save(base, folder / f"s{seed}.png")
        save(variants(base)["resize"], folder / f"s{seed}_resize.png")
        save(variants(base)["jpeg40"], folder / f"s{seed}_jpeg40.png")
    solid(folder / "flat.png", 200)  # one colour: no pattern to hash
    out = tmp_path / "groups.csv"
    result = run("dupes", str(folder), "-o", str(out), home=home.root)
    assert result.exit_code == 0, result.output
    assert "0 images compared by features" in result.output
    assert "6 by perceptual hash" in result.output
    assert "1 image could not be compared" in result.output
    rows = list(csv.DictReader(out.open()))
    assert {row["similar_by"] for row in rows} == {"phash"}
    groups: dict[str, set[str]] = {}
    for row in rows:
        groups.setdefault(row["group"], set()).add(Path(row["image_path"]).name)
    assert sorted(map(sorted, groups.values())) == [
        ["s3200.png", "s3200_jpeg40.png", "s3200_resize.png"],
        ["s3201.png", "s3201_jpeg40.png", "s3201_resize.png"],
    ]
