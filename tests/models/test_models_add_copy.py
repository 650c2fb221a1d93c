"""`models add` copies the file into the home; `--link` keeps it where it is."""

from __future__ import annotations

import csv
from pathlib import Path

import onnx
from onnx import TensorProto, helper
from support.imagegen import photo_folder
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core.store import Store

runner = CliRunner()
FLAGS = ["--input-size", "8", "8", "--mean", "0", "0", "0", "--std", "1", "1", "1"]


def run(*args: str, home: Path):
    return runner.invoke(app, [*args, "--home", str(home)], catch_exceptions=False)


def mean_model(path: Path) -> Path:
    """A tiny classifier: P(nsfw) = the mean pixel value in 0..1 (no metadata, no weights)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 8, 8])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, [None, 1])
    mean = helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=0)
    grey = helper.make_node("ReduceMean", ["mean"], ["probability"], axes=[1], keepdims=1)
    graph = helper.make_graph([mean, grey], "mean", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.save(model, path)
    return path


def scan(folder: Path, model_id: str, home: Path, out: Path):
    return run("scan", str(folder), "--model", model_id, "-o", str(out), home=home)


def test_add_copies_the_file_and_a_deleted_original_still_scores(tmp_path, home):
    original = mean_model(tmp_path / "mean.onnx")
    added = run("models", "add", str(original), *FLAGS, "--output", "probability", home=home)
    assert added.exit_code == 0, added.output
    copy = home / "models" / "mean.onnx"
    assert added.output.splitlines()[1] == (
        f"copied from {original.resolve()}; the original may be moved or deleted"
    )
    with Store.open(home / "store.db") as store:
        row = store.model("mean")
        assert row.path == str(copy) and row.meta["added_from"] == str(original)
    original.unlink()
    photo_folder(tmp_path / "photos", 2)
    result = scan(tmp_path / "photos", "mean", home, tmp_path / "preds.csv")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "preds.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and all(0 <= float(r["probability"]) <= 1 for r in rows)


def test_link_keeps_the_external_path(tmp_path, home):
    original = mean_model(tmp_path / "mean.onnx")
    args = ["models", "add", str(original), *FLAGS, "--output", "probability", "--link"]
    added = run(*args, home=home)
    assert added.exit_code == 0, added.output
    assert "copied from" not in added.output
    assert not (home / "models" / "mean.onnx").exists()
    with Store.open(home / "store.db") as store:
        assert store.model("mean").path == str(original)
    original.unlink()  # a linked model breaks with its file, and says so in one line
    photo_folder(tmp_path / "photos", 1)
    result = scan(tmp_path / "photos", "mean", home, tmp_path / "preds.csv")
    assert result.exit_code == 2
    assert f"the ONNX file of model 'mean' is missing: {original}" in result.output
