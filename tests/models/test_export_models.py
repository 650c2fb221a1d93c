"""Exported models in use: `models add`, refusals, and `scan --model` with the ONNX files."""

from __future__ import annotations

import csv

import numpy as np
import onnx
import pytest
from support.export import cli, copy_home, error_lines

from nsfw_tui.core.store import Store
from nsfw_tui.models import onnx_files
from nsfw_tui.models.registry import load_scorer
from trainer import quantize

# Every test here needs `exported` (models/conftest.py): a baseline trained, then exported and
# quantized, once per module: about 10 s on two cores before the first test can start.
pytestmark = pytest.mark.slow


def _row(home, model_id):
    with Store.open(home / "store.db") as store:
        return store.model(model_id)


def _scan(folder, model_id, out, home) -> dict[str, float]:
    result = cli("scan", str(folder), "--model", model_id, "-o", str(out), home=home)
    assert result.exit_code == 0, result.output
    with open(out, newline="") as fh:
        return {r["image_path"]: float(r["probability"]) for r in csv.DictReader(fh)}


# -- scan with the exported models -------------------------------------------------------------


def test_scan_uses_the_exported_models(exported, tmp_path):
    tmp, home, result, _, _ = exported
    folder = tmp / "data"
    torch_p = _scan(folder, result.model_id, tmp_path / "torch.csv", home)
    onnx_p = _scan(folder, f"{result.model_id}-onnx", tmp_path / "onnx.csv", home)
    int8_p = _scan(folder, f"{result.model_id}-onnx-int8", tmp_path / "int8.csv", home)
    assert len(torch_p) == len(onnx_p) == len(int8_p) == 100
    diff = max(abs(onnx_p[k] - torch_p[k]) for k in torch_p)
    assert diff <= 1e-4
    assert max(abs(int8_p[k] - onnx_p[k]) for k in onnx_p) <= quantize.INT8_MAX_PROB_CHANGE
    with Store.open(home / "store.db") as store:
        cached = store.predictions(f"{result.model_id}-onnx")
    assert len(cached) == 100  # scored and cached under the ONNX model's own id


def test_static_batch_and_opset_export_scores_any_batch(exported, tmp_path):
    _, home, result, _, _ = exported
    home2 = copy_home(home, tmp_path / "home")
    target = tmp_path / "s.onnx"
    out = cli("export", "--onnx", "--static-batch", "--opset", "17", "-o", str(target), home=home2)
    assert out.exit_code == 0, out.output
    assert "dynamo exporter (opset 17, 48x48, batch 1)" in out.output
    model = onnx.load(tmp_path / "s.onnx")
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert onnx_files.read_metadata(tmp_path / "s.onnx")["opset"] == "17"
    static = load_scorer(_row(home2, f"{result.model_id}-onnx"))
    dynamic = load_scorer(_row(home, f"{result.model_id}-onnx"))
    pixels = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        static.score(pixels).probabilities, dynamic.score(pixels).probabilities, atol=1e-5
    )


# -- refusals ----------------------------------------------------------------------------------


def test_only_checkpoint_models_can_be_exported(exported, tmp_path):
    _, home, result, _, _ = exported
    home2 = copy_home(home, tmp_path / "home")
    for model_id, why in (
        ("open_nsfw", "kind builtin (the built-in network ships as ONNX already)"),
        (f"{result.model_id}-onnx", "kind onnx (it is ONNX already)"),
    ):
        out = cli("export", "--onnx", "--model", model_id, home=home2)
        assert out.exit_code == 2
        (line,) = error_lines(out)
        assert why in line and "only checkpoint models" in line and "--checkpoint PATH" in line
    bad = {
        ("export",): "choose one: nsfw-tui export --onnx, or nsfw-tui export --mlflow",
        ("export", "--onnx", "--opset", "99"): "--opset must be between 7 and",
        # the pooled head takes other sizes, but two max-pools need 4 pixels a side
        ("export", "--onnx", "--input-size", "3", "3"): "baseline_cnn cannot take a 3x3 input",
        ("export", "--onnx", "-o", str(tmp_path / "m.txt")): "must end in .onnx",
        ("export", "--onnx", "--model", "nope"): "no model with id 'nope'",
    }
    for args, message in bad.items():
        out = cli(*args, home=home2)
        assert out.exit_code == 2, out.output
        (line,) = error_lines(out)
        assert message in line
    assert not list(tmp_path.glob("*.onnx"))


# -- models add ----------------------------------------------------------------------------------


def test_models_add_reads_the_files_metadata(exported, tmp_path):
    tmp, home, result, _, _ = exported
    home2 = copy_home(home, tmp_path / "home")
    float_row = _row(home, f"{result.model_id}-onnx")
    out = cli("models", "add", float_row.path, "--id", "mine", home=home2)
    assert out.exit_code == 0, out.output
    assert "preprocessing from the file's metadata (preprocessing, threshold)" in out.output
    row = _row(home2, "mine")
    assert (row.kind, row.meta["output"]) == ("onnx", "probability")
    assert row.preprocessing == float_row.preprocessing
    assert row.threshold == pytest.approx(float_row.threshold)
    assert row.metrics == float_row.metrics
    probs = _scan(tmp / "data", "mine", tmp_path / "mine.csv", home2)
    assert len(probs) == 100
    again = cli("models", "add", float_row.path, "--id", "mine", home=home2)
    assert "exists already" in error_lines(again)[0]
    # without --id the name is the one export gave it, which this store already has
    same = cli("models", "add", float_row.path, home=home2)
    assert f"{float_row.id!r} exists already; choose another with --id" in error_lines(same)[0]


def _without_metadata(src, dest):
    model = onnx.load(src)
    del model.metadata_props[:]
    onnx.save(model, dest)
    return dest


def test_models_add_without_metadata_needs_flags(exported, tmp_path):
    _, home, result, _, _ = exported
    home2 = copy_home(home, tmp_path / "home")
    float_row = _row(home, f"{result.model_id}-onnx")
    plain = str(_without_metadata(float_row.path, tmp_path / "plain.onnx"))
    out = cli("models", "add", plain, home=home2)
    assert out.exit_code == 2
    (line,) = error_lines(out)
    assert "carries no preprocessing metadata" in line
    for flag in ("--input-size", "--mean", "--std", "--output", "--layout", "--scale"):
        assert flag in line
    mean, std = ["0.485", "0.456", "0.406"], ["0.229", "0.224", "0.225"]
    preprocessing = ["--mean", *mean, "--std", *std, "--output", "probability"]
    wrong_size = cli("models", "add", plain, *preprocessing, "--input-size", "32", "32", home=home2)
    assert wrong_size.exit_code == 2
    assert "rejects a 1x3x32x32 NCHW input" in error_lines(wrong_size)[0]
    caffe_units = ["--mean", "104", "117", "123", "--std", "1", "1", "1", "--output", "probability"]
    caffe = cli("models", "add", plain, *caffe_units, home=home2)
    assert "looks like 0..255 units" in error_lines(caffe)[0]
    # input size and layout come from the graph's static (3, 48, 48) input
    ok = cli("models", "add", plain, *preprocessing, "--threshold", "0.3", home=home2)
    assert ok.exit_code == 0, ok.output
    assert "preprocessing from the command line" in ok.output
    row = _row(home2, "plain")
    assert row.preprocessing == float_row.preprocessing and row.threshold == 0.3
    a = load_scorer(row)
    b = load_scorer(float_row)
    pixels = np.random.default_rng(1).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    np.testing.assert_array_equal(a.score(pixels).probabilities, b.score(pixels).probabilities)


def test_models_add_refuses_a_broken_file(exported, tmp_path):
    _, home, _, _, _ = exported
    home2 = copy_home(home, tmp_path / "home")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    out = cli("models", "add", str(junk), home=home2)
    assert out.exit_code == 2 and "not a readable ONNX file" in error_lines(out)[0]
    missing = cli("models", "add", str(tmp_path / "none.onnx"), home=home2)
    assert "ONNX file not found" in error_lines(missing)[0]
