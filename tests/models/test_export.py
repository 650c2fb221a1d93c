"""ONNX export: PyTorch parity (M1), preprocessing parity (M2), exporter fallback (M3), int8."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from support.export import cli, copy_home, error_lines

from nsfw_tui.core.images import decode_file
from nsfw_tui.core.preprocess import IMAGENET, Preprocessing
from nsfw_tui.core.store import Store
from nsfw_tui.models import onnx_files
from nsfw_tui.models.registry import load_scorer
from trainer import data as tdata
from trainer import export, parity, quantize
from trainer.checkpoint import load_checkpoint, save_checkpoint

# Every test here needs `exported` (models/conftest.py): a baseline trained, then exported and
# quantized, once per module: about 10 s on two cores before the first test can start.
pytestmark = pytest.mark.slow


def _rows(exported):
    _, _, result, _, rows = exported
    return (
        rows[result.model_id],
        rows[f"{result.model_id}-onnx"],
        rows[f"{result.model_id}-onnx-int8"],
    )


# -- export, registration and metadata ------------------------------------------------------


def test_export_registers_a_self_contained_onnx_model(exported):
    _, _, _, output, _ = exported
    source, onnx_row, _ = _rows(exported)
    assert "with the dynamo exporter (opset 18" in output and "fell back" not in output
    assert "onnx.checker full check passed" in output and "0 label flips" in output
    assert onnx_row.kind == "onnx" and onnx_row.path.endswith("model.onnx")
    assert onnx_row.threshold == pytest.approx(source.threshold)
    assert onnx_row.preprocessing == source.preprocessing
    assert onnx_row.metrics == source.metrics
    assert onnx_row.meta["output"] == "probability" and onnx_row.meta["exporter"] == "dynamo"
    model = onnx.load(onnx_row.path)
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["probability"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 48, 48]
    assert not [f for f in Path(onnx_row.path).parent.iterdir() if f.name.endswith(".part")]


def test_metadata_reads_back(exported):
    source, onnx_row, _ = _rows(exported)
    props = onnx_files.read_metadata(onnx_row.path)
    pre = Preprocessing.from_dict(json.loads(props["preprocessing"]))
    assert pre.to_dict() == source.preprocessing
    assert json.loads(props["input_size"]) == [48, 48]
    assert json.loads(props["mean"]) == list(pre.mean) and json.loads(props["std"]) == list(pre.std)
    assert (props["layout"], props["channel_order"]) == ("NCHW", "RGB")
    assert float(props["threshold"]) == pytest.approx(source.threshold)
    assert json.loads(props["labels"]) == {"0": "sfw", "1": "nsfw"}
    assert props["model_id"] == source.id and props["output"] == "probability"
    assert json.loads(props["metrics"]) == source.metrics
    assert props["source_checkpoint"] == source.path
    assert (props["exporter"], props["opset"]) == ("dynamo", "18")


# -- M1: parity ---------------------------------------------------------------------------


def _parity(path, module, x):
    session = onnx_files.cpu_session(path)
    with torch.inference_mode():
        ref = module(torch.from_numpy(x)).numpy()
    got = session.run(None, {"image": x})[0]
    assert got.shape == (len(x),)
    return float(np.max(np.abs(got - ref))), ref, got


@pytest.mark.parametrize("batch", [1, 7, 32])
def test_m1_parity_on_random_and_validation_images(exported, batch):
    _, home, result, _, _ = exported
    source, onnx_row, _ = _rows(exported)
    model, _ = load_checkpoint(source.path)
    module = export._probability_module(model)
    rng = np.random.default_rng(batch)
    x = (rng.standard_normal((batch, 3, 48, 48)) * rng.uniform(0.1, 10)).astype(np.float32)
    diff, _, _ = _parity(onnx_row.path, module, x)
    assert diff <= 1e-4
    with Store.open(home / "store.db") as store:
        pre = load_scorer(onnx_row).preprocessing
        pixels, _, src = parity.real_images(store, result.run_id, pre)
    assert src == "validation" and pixels.shape == (20, 48, 48, 3)
    real = pre.tensor(np.resize(pixels, (batch, 48, 48, 3)))  # cycles the 20 validation images
    diff, ref, got = _parity(onnx_row.path, module, real)
    assert diff <= 1e-4
    # 0 label flips at the operating threshold. The threshold is one validation image's own
    # score (threshold_for_recall), so that image sits on it: within 1e-4 it is a tie.
    t = source.threshold
    tie = np.abs(ref - t) <= 1e-4
    assert np.array_equal((ref >= t)[~tie], (got >= t)[~tie])


def test_m1_convnext_atto_parity(exported, tmp_path):
    """The ConvNeXt family exports too (random weights: parity does not need training)."""
    _, home, _, _, _ = exported
    from trainer.models import build_model

    torch.manual_seed(0)
    cfg = {"name": "convnext_atto", "pretrained": False, "dropout": 0.0}
    model = build_model(cfg, (32, 32)).eval()
    meta = {
        "model_id": "convnext_atto-test",
        "model": cfg,
        "input_size": [32, 32],
        "threshold": 0.5,
        "preprocessing": IMAGENET(32).to_dict(),
        "architecture": "convnext_atto",
    }
    ckpt = save_checkpoint(tmp_path / "ck", model, meta)
    with Store.open(copy_home(home, tmp_path / "home") / "store.db") as store:
        report = export.export_onnx(store, checkpoint=ckpt, output=tmp_path / "atto.onnx")
    assert report.exporter == "dynamo" and report.model_id == "convnext_atto-test-onnx"
    assert report.parity.max_diff <= 1e-4 and report.parity.flips == 0
    assert report.parity.image_source == "labelled" and report.parity.image_n == 100
    x = np.random.default_rng(1).standard_normal((7, 3, 32, 32)).astype(np.float32)
    assert _parity(report.path, export._probability_module(model), x)[0] <= 1e-4


# -- M2: preprocessing parity ----------------------------------------------------------------


def _odd_images(folder):
    """Files where decoding choices matter: a big JPEG (draft mode), grey, RGBA, palette, EXIF."""
    from support.imagegen import photo, save

    big = save(photo((1600, 1200), 3), folder / "big.jpg", quality=90)
    grey = save(photo((90, 70), 4).convert("L"), folder / "grey.png")
    rgba = photo((80, 80), 5).convert("RGBA")
    rgba.putalpha(128)
    save(rgba, folder / "rgba.png")
    save(photo((64, 64), 6).convert("P"), folder / "palette.gif")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: the loader turns it upright in both paths
    save(photo((120, 60), 7), folder / "rotated.jpg", exif=exif, quality=90)
    return [big, grey, folder / "rgba.png", folder / "palette.gif", folder / "rotated.jpg"]


def test_m2_training_and_serving_preprocessing_agree(exported, tmp_path):
    """The val transform (ImageDataset) and the ONNX serving path give the same tensor.

    Both resize with Pillow from the same loader (JPEG draft decoding included), so they
    agree exactly; the bound is the issue's 1/255 in 0..1 pixel units.
    """
    _, home, result, _, _ = exported
    source, onnx_row, _ = _rows(exported)
    from_file = Preprocessing.from_dict(
        json.loads(onnx_files.read_metadata(onnx_row.path)["preprocessing"])
    )
    serving = load_scorer(onnx_row).preprocessing
    assert serving == from_file == Preprocessing.from_dict(source.preprocessing)
    with Store.open(home / "store.db") as store:
        samples, _ = tdata.labelled_samples(store)
    val = set(result.val_hashes)
    chosen = [s for s in samples if s.sha256 in val]
    chosen += [tdata.Sample(str(i), str(p), 0) for i, p in enumerate(_odd_images(tmp_path))]
    training = tdata.ImageDataset(chosen, Preprocessing.from_dict(source.preprocessing))
    std = np.asarray(serving.std, np.float32)[:, None, None]
    worst = 0.0
    for i, sample in enumerate(chosen):
        train_x, _, ok = training[i]
        assert bool(ok)
        decoded = decode_file(sample.path, serving, use_draft=True, max_frames=1)
        serve_x = serving.tensor(decoded.pixels[0][None])[0]
        worst = max(worst, float(np.max(np.abs(train_x.numpy() - serve_x) * std)))  # 0..1 units
    assert worst <= 1 / 255


# -- M3: exporter fallback and failure ---------------------------------------------------------


@torch.library.custom_op("nsfwtest::passthrough", mutates_args=())
def passthrough(x: torch.Tensor) -> torch.Tensor:
    """An op with a TorchScript-exporter symbolic and no dynamo translation."""
    return x.clone()


@passthrough.register_fake
def _(x):
    return torch.empty_like(x)


@torch.library.custom_op("nsfwtest::untranslatable", mutates_args=())
def untranslatable(x: torch.Tensor) -> torch.Tensor:
    """An op neither exporter can translate."""
    return x.clone()


@untranslatable.register_fake
def _(x):
    return torch.empty_like(x)


class _WithOp(torch.nn.Module):
    def __init__(self, inner, op):
        super().__init__()
        self.inner, self.op = inner, op

    def forward(self, x):
        return self.op(self.inner(x))


@pytest.fixture
def legacy_symbolic():
    torch.onnx.register_custom_op_symbolic(
        "nsfwtest::passthrough", lambda g, x: g.op("Identity", x), 17
    )
    yield
    torch.onnx.unregister_custom_op_symbolic("nsfwtest::passthrough", 17)


def _with_op(monkeypatch, op):
    real = export.load_checkpoint

    def load(path):
        model, meta = real(path)
        return _WithOp(model, op).eval(), meta

    monkeypatch.setattr(export, "load_checkpoint", load)


def test_m3_dynamo_failure_falls_back_to_torchscript(
    exported, tmp_path, monkeypatch, legacy_symbolic
):
    _, home, result, _, _ = exported
    _with_op(monkeypatch, passthrough)
    home2 = copy_home(home, tmp_path / "home")
    checkpoint, target = str(_rows(exported)[0].path), tmp_path / "out" / "m.onnx"
    out = cli("export", "--onnx", "--checkpoint", checkpoint, "-o", str(target), home=home2)
    assert out.exit_code == 0, out.output
    assert "the dynamo exporter failed" in out.output and "nsfwtest" in out.output
    assert "with the torchscript exporter (opset 17" in out.output
    assert "fell back from: dynamo exporter (opset 18)" in out.output
    props = onnx_files.read_metadata(tmp_path / "out" / "m.onnx")
    assert (props["exporter"], props["opset"]) == ("torchscript", "17")
    with Store.open(home2 / "store.db") as store:
        row = store.model(f"{result.model_id}-onnx")
    assert row.meta["exporter"] == "torchscript" and row.meta["parity_max_abs_diff"] <= 1e-4


def _registered_under(home2, folder) -> list[str]:
    with Store.open(home2 / "store.db") as store:
        return [m.id for m in store.models() if m.path and str(folder) in m.path]


def _no_file_and_no_model(tmp_path, home2):
    folder = tmp_path / "out"
    assert not folder.exists() or list(folder.iterdir()) == []  # no file, no .part left
    assert _registered_under(home2, folder) == []


def test_m3_both_exporters_failing_is_one_clear_error(exported, tmp_path, monkeypatch):
    _, home, _, _, _ = exported
    _with_op(monkeypatch, untranslatable)
    home2 = copy_home(home, tmp_path / "home")
    out = cli("export", "--onnx", "-o", str(tmp_path / "out" / "m.onnx"), home=home2)
    assert out.exit_code == 2
    (line,) = error_lines(out)
    assert "export failed, no file written" in line
    assert "dynamo exporter (opset 18)" in line and "torchscript exporter (opset 17)" in line
    assert line.count("nsfwtest") >= 2, line  # each reason names the op it lacks
    _no_file_and_no_model(tmp_path, home2)


def test_a_graph_that_disagrees_with_pytorch_is_refused(exported, tmp_path, monkeypatch):
    """An exporter that got the weights wrong: parity catches it, nothing is kept."""
    _, home, _, _, _ = exported
    legacy = export._export_legacy

    def wrong(module, example, opset, dynamic):
        bad = copy.deepcopy(module)
        with torch.no_grad():
            for p in bad.parameters():
                p.add_(0.01)
        return legacy(bad, example, opset, dynamic)

    monkeypatch.setattr(export, "_export_dynamo", wrong)
    monkeypatch.setattr(export, "_export_legacy", wrong)
    home2 = copy_home(home, tmp_path / "home")
    out = cli("export", "--onnx", "-o", str(tmp_path / "out" / "m.onnx"), home=home2)
    assert out.exit_code == 2
    (line,) = error_lines(out)
    assert "onnxruntime disagrees with PyTorch: max abs diff" in line and "> 0.0001" in line
    _no_file_and_no_model(tmp_path, home2)


# -- int8 -----------------------------------------------------------------------------------


def test_int8_copy_is_quantized_and_within_bounds(exported):
    _, _, _, output, _ = exported
    _, onnx_row, int8_row = _rows(exported)
    assert int8_row.kind == "onnx" and int8_row.path.endswith("model.int8.onnx")
    model = onnx.load(int8_row.path)
    ops = [n.op_type for n in model.graph.node]
    assert quantize.has_quantized_ops(model) and ops.count("DequantizeLinear") >= 4
    # per-channel: each conv weight has one scale per output channel
    scales = {i.name: i for i in model.graph.initializer}
    conv_w = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    assert conv_w and all(w in dq for w in conv_w)
    assert all(
        len(scales[dq[w].input[1]].dims) == 1 and scales[dq[w].input[1]].dims[0] > 1 for w in conv_w
    )
    assert int8_row.meta["max_probability_change"] <= quantize.INT8_MAX_PROB_CHANGE
    assert abs(int8_row.meta["auroc_int8"] - int8_row.meta["auroc_float"]) <= 0.01
    assert (
        int8_row.threshold == onnx_row.threshold
        and int8_row.preprocessing == onnx_row.preprocessing
    )
    assert "int8:" in output and "max probability change" in output and "img/s" in output
    assert onnx_files.read_metadata(int8_row.path)["quantization"].startswith("int8 static QDQ")


def test_int8_outside_the_bounds_is_refused_and_the_float_model_kept(
    exported, tmp_path, monkeypatch
):
    _, home, result, _, _ = exported
    monkeypatch.setattr(quantize, "INT8_MAX_PROB_CHANGE", 1e-12)  # any real quantization moves more
    home2 = copy_home(home, tmp_path / "home")
    out = cli("export", "--onnx", "--quantize", "-o", str(tmp_path / "out" / "m.onnx"), home=home2)
    assert out.exit_code == 2
    (line,) = error_lines(out)
    assert "the int8 copy is too far from the float model" in line and "not kept" in line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.onnx"]
    assert _registered_under(home2, tmp_path / "out") == [f"{result.model_id}-onnx"]
