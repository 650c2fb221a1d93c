"""Tests for training: learning, models, checkpoints, scoring, runs, plots, config, hub errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from support.imagegen import zero_tailed
from support.trainer import (
    config,
    home_for,
    labelled_store,
    write_family,
)

from nsfw_tui.core.config_schema import MONITORS
from nsfw_tui.core.errors import ConfigError, NsfwTuiError
from nsfw_tui.core.images import load_image
from nsfw_tui.core.metrics import auroc, confusion
from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.core.store import ScoreRecord, Store
from nsfw_tui.models.registry import load_scorer
from trainer import data as tdata
from trainer.checkpoint import CheckpointScorer, load_checkpoint, read_meta, save_checkpoint
from trainer.errors import ModelConfigError, NotEnoughLabelsError, WeightsUnavailableError
from trainer.fit import EPOCH_METRICS
from trainer.models import BASELINE, BaselineCNN, ConvNextClassifier, build_model
from trainer.plots import plot_series, quality_metric, write_plots
from trainer.run import THRESHOLD_MARGIN, choose_device, threshold_metrics, train

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One baseline run on 60 stripes (nsfw) and 60 blobs (sfw), shared by several tests."""
    tmp = tmp_path_factory.mktemp("trained")
    store_path = labelled_store(tmp, 60, 60)
    events = []
    result = train(
        store_path,
        home_for(store_path),
        config(f"training.max_epochs={EPOCHS}"),
        on_event=events.append,
    )
    return tmp, store_path, result, events


# -- learning and the run record -------------------------------------------------------------


@pytest.mark.slow
def test_baseline_learns_stripes_from_blobs(trained):
    _, _, result, events = trained
    assert result.status == "done", result.message
    assert result.metrics["val_auroc"] >= 0.95
    assert result.counts == {
        "train": {"nsfw": 48, "sfw": 48},
        "val": {"nsfw": 12, "sfw": 12},
        "skipped": 0,
    }
    assert len(result.epochs) == EPOCHS
    for epoch in result.epochs:
        assert set(EPOCH_METRICS) <= set(epoch)
    # the kept epoch is the best by the baseline's monitor, val_accuracy (first of any tie)
    accuracies = [e["val_accuracy"] for e in result.epochs]
    assert result.best_epoch == accuracies.index(max(accuracies)) + 1
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("epoch") == EPOCHS
    assert kinds.count("batch") == EPOCHS * 6  # 96 training images in batches of 16


@pytest.mark.slow
def test_run_is_recorded_with_model_and_val_hashes(trained):
    _, store_path, result, _ = trained
    with Store.open(store_path) as store:
        latest = store.run()
        assert latest is not None and latest.id == result.run_id
        assert [r.id for r in store.runs()] == [result.run_id]
        assert latest.status == "done"
        assert latest.model_id == result.model_id
        assert latest.checkpoint == result.checkpoint
        assert latest.epochs == result.epochs
        assert latest.threshold == result.threshold
        assert latest.config["model"]["name"] == BASELINE
        assert latest.config["data"]["input_size"] == [64, 64]
        assert latest.val_hashes == result.val_hashes
        assert len(set(result.val_hashes)) == 24
        labels = store.current_labels(result.val_hashes)
        assert sorted(ev.label for ev in labels.values()).count("nsfw") == 12

        model = store.model(result.model_id)
        assert model is not None and model.kind == "checkpoint"
        assert model.threshold == result.threshold
        assert model.metrics["val_auroc"] == result.metrics["val_auroc"]
        assert model.preprocessing == IMAGENET(64).to_dict()
        assert model.active  # the first model in a store becomes active


@pytest.mark.slow
def test_eval_measures_a_trained_model_on_its_validation_images(trained):
    from typer.testing import CliRunner

    from nsfw_tui.cli import app

    _, store_path, result, _ = trained
    home = str(store_path.parent)
    runner = CliRunner()
    val = runner.invoke(app, ["eval", "--model", result.model_id, "--home", home])
    assert val.exit_code == 0, val.output
    assert f"on {len(result.val_hashes)} labelled images" in val.output
    assert f"measured on 24 validation images of run {result.run_id}" in val.output
    every = runner.invoke(app, ["eval", "--split", "all", "--home", home])
    assert every.exit_code == 0, every.output
    assert "on 120 labelled images" in every.output
    assert "measured on all 120 labelled images, training images included" in every.output


@pytest.mark.slow
def test_checkpoint_metadata_records_provenance(trained):
    _, _, result, _ = trained
    meta = read_meta(result.checkpoint)
    assert meta["threshold"] == result.threshold
    assert meta["preprocessing"] == IMAGENET(64).to_dict()
    assert meta["labels"] == result.counts
    assert meta["seed"] == 42
    assert meta["deterministic"]["enabled"] is True
    assert meta["versions"]["torch"] and meta["versions"]["timm"]
    assert meta["config"]["training"]["max_epochs"] == EPOCHS
    assert meta["best_epoch"] == result.best_epoch
    assert "git_commit" in meta
    assert set(os.listdir(Path(result.checkpoint).parent)) == {"model.json", "model.safetensors"}


@pytest.mark.slow
def test_trained_model_scores_images_through_the_registry(trained, tmp_path):
    _, store_path, result, _ = trained
    with Store.open(store_path) as store:
        scorer = load_scorer(store.model(result.model_id))
        val = set(result.val_hashes)
        val_files = [r for r in store.labelled_files() if r.sha256 in val]
    assert scorer.id == result.model_id
    assert scorer.default_threshold == result.threshold

    # fresh images the model never saw: the two families come apart
    fresh = write_family(tmp_path / "s", "stripes", 16, seed=777) + write_family(
        tmp_path / "b", "blobs", 16, seed=778
    )
    probs = _score(scorer, [str(p) for p in fresh])
    assert probs.dtype == np.float32 and ((probs >= 0) & (probs <= 1)).all()
    assert auroc([1] * 16 + [0] * 16, probs) >= 0.9

    # the validation images score as they did in training: the stored threshold still
    # reaches the target recall, so the scorer's preprocessing is the validation one
    labels = [1 if r.label == "nsfw" else 0 for r in val_files]
    val_probs = _score(scorer, [r.path for r in val_files])
    assert confusion(labels, val_probs, scorer.default_threshold).recall >= 0.95


def _score(scorer, paths: list[str]) -> np.ndarray:
    prep = scorer.preprocessing
    pixels = np.stack(
        [prep.pixels(load_image(p, draft=prep.draft_size(), max_frames=1).frames[0]) for p in paths]
    )
    return scorer.score(pixels).probabilities


@pytest.mark.slow
def test_plots_have_one_point_per_epoch(trained, tmp_path):
    _, store_path, result, _ = trained
    with Store.open(store_path) as store:
        record = store.run(result.run_id)
    paths = write_plots(record, tmp_path / "plots")
    assert [p.name for p in paths] == [
        "loss_curves.png",
        "accuracy_curves.png",  # the baseline is judged by accuracy
        "combined_metrics.png",
    ]
    for path in paths:
        with Image.open(path) as img:
            img.verify()
            assert img.format == "PNG"
    series = plot_series(record)
    for metric in ("loss", "auroc", "accuracy"):
        assert series[metric]["epoch"] == list(range(1, EPOCHS + 1))
        assert len(series[metric]["train"]) == len(series[metric]["val"]) == EPOCHS
        assert None not in series[metric]["train"] + series[metric]["val"]
    assert series["loss"]["val"] == [e["val_loss"] for e in result.epochs]
    convnext = dataclasses.replace(
        record, config={**record.config, "model": {"name": "convnext_tiny"}}
    )
    assert quality_metric(convnext) == "auroc"
    assert [p.name for p in write_plots(convnext, tmp_path / "c")][1] == "auroc_curves.png"


# -- thresholds ------------------------------------------------------------------------------


def test_threshold_is_the_highest_reaching_the_target_recall():
    labels = [1, 1, 1, 1, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.2, 0.75, 0.3, 0.1]
    at = threshold_metrics(labels, scores, 0.75)
    # 3 of 4 NSFW at or above 0.7; stored THRESHOLD_MARGIN under that image's own score
    assert at["threshold"] == pytest.approx(0.7 - THRESHOLD_MARGIN)
    assert at["val_recall_at_threshold"] == 0.75
    assert at["val_precision_at_threshold"] == 0.75  # 0.75 is a false alarm
    assert threshold_metrics(labels, scores, 0.95)["threshold"] == pytest.approx(0.2 - 1e-4)
    assert threshold_metrics(labels, scores, 0.95)["val_fpr_at_threshold"] == pytest.approx(2 / 3)
    assert threshold_metrics([0, 0], [0.1, 0.2], 0.95) is None


def test_stored_threshold_survives_float_noise_on_its_own_image():
    # the threshold image scored 1e-6 lower elsewhere (another batch size, the ONNX copy)
    # still counts as NSFW; a close lower score bounds the margin at halfway to it
    labels, scores = [1, 1, 0], [0.9, 0.5, 0.49999]
    t = threshold_metrics(labels, scores, 1.0)["threshold"]
    assert 0.49999 < t < 0.5 - 1e-6
    assert t == pytest.approx(0.499995)


# -- models ------------------------------------------------------------------------------------


def test_baseline_model_shape():
    model = build_model(config().model, (64, 64))
    assert isinstance(model, BaselineCNN)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64]
    assert model(torch.zeros(5, 3, 64, 64)).shape == (5,)


def test_baseline_pools_before_a_small_dense_head():
    cfg = config("data.input_size=[200,200]")  # the defaults: 4x4 max pooling
    model = build_model(cfg.model, tuple(cfg.data.input_size))
    dense = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    # the original flattened 64x50x50 into 128 units: 20.5M weights for a few hundred labels
    assert dense[0].in_features == 64 * 4 * 4
    assert sum(m.weight.numel() for m in dense) < 1_000_000
    # max pooling unless told: averaging a 50x50 cell washes out small, local responses
    assert isinstance(model.pool, torch.nn.AdaptiveMaxPool2d)
    avg = build_model({**cfg.model, "pool_kind": "avg"}, (200, 200))
    assert isinstance(avg.pool, torch.nn.AdaptiveAvgPool2d)
    with pytest.raises(ModelConfigError, match="pool_kind"):
        build_model({**cfg.model, "pool_kind": "median"}, (200, 200))
    flat = build_model({**cfg.model, "pool": 0}, (200, 200))  # the original's layout
    assert flat.head[1].in_features == 64 * 50 * 50
    # pooling frees the head from the input size: any size the conv blocks can take works
    assert model(torch.zeros(2, 3, 96, 120)).shape == (2,)


def test_baseline_trains_a_step_and_exports(tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    model = build_model(config().model, (64, 64))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0.0, 1.0, 0.0, 1.0])
    before = model.head[1].weight.detach().clone()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
    loss.backward()
    opt.step()
    assert not torch.equal(before, model.head[1].weight)
    model.eval()
    path = tmp_path / "baseline.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"])
    with torch.no_grad():
        expected = model(x).numpy()
    got = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_unpooled_checkpoint_of_an_older_version_still_loads(tmp_path):
    """A baseline checkpoint saved before model.pool existed flattened the whole map."""
    torch.manual_seed(0)
    old = {"name": BASELINE, "channels": [4, 8], "hidden": 8, "dropout": 0.0}  # no "pool"
    model = BaselineCNN((32, 32), (4, 8), 8, 0.0, pool=0).eval()
    path = save_checkpoint(tmp_path / "old", model, {"model": old, "input_size": [32, 32]})
    loaded, _ = load_checkpoint(path)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.head[1].in_features == 8 * 8 * 8


def test_pooled_checkpoint_from_before_pool_kind_still_averages(tmp_path):
    """model.pool_kind came after model.pool: those pooled checkpoints averaged their grid."""
    torch.manual_seed(0)
    old = {"name": BASELINE, "channels": [4, 8], "pool": 4, "hidden": 8, "dropout": 0.0}
    model = BaselineCNN((32, 32), (4, 8), 8, 0.0, pool=4, pool_kind="avg").eval()
    path = save_checkpoint(tmp_path / "old", model, {"model": old, "input_size": [32, 32]})
    meta = json.loads(Path(path).read_text())
    assert meta["model"].pop("pool_kind") == "avg"  # new checkpoints record it
    Path(path).write_text(json.dumps(meta))  # as the older versions wrote it
    loaded, _ = load_checkpoint(path)
    assert isinstance(loaded.pool, torch.nn.AdaptiveAvgPool2d)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_convnext_head_and_frozen_stages():
    cfg = {"name": "convnext_atto", "pretrained": False, "freeze_stages": 2, "dropout": 0.25}
    model = build_model(cfg, (64, 64))
    assert isinstance(model, ConvNextClassifier)
    norm, drop, linear = model.head
    assert isinstance(norm, torch.nn.LayerNorm) and norm.normalized_shape == (320,)
    assert isinstance(drop, torch.nn.Dropout) and drop.p == 0.25
    assert (linear.in_features, linear.out_features) == (320, 1)
    backbone = model.backbone
    frozen = [backbone.stem, *backbone.stages[:2]]
    trainable = [*backbone.stages[2:], model.head]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for m in trainable for p in m.parameters())
    assert model(torch.zeros(3, 3, 64, 64)).shape == (3,)

    unfrozen = build_model({**cfg, "freeze_stages": 0, "head_norm": False}, (64, 64))
    assert all(p.requires_grad for p in unfrozen.parameters())
    assert isinstance(unfrozen.head[0], torch.nn.Identity)
    with pytest.raises(ModelConfigError, match="freeze_stages"):
        build_model({**cfg, "freeze_stages": 5}, (64, 64))


def test_unknown_model_name_is_one_clear_line(tmp_path):
    with pytest.raises(ModelConfigError) as err:
        build_model({"name": "resnet50"}, (64, 64))
    assert "\n" not in str(err.value)
    assert "baseline_cnn" in str(err.value) and "convnext_tiny" in str(err.value)
    # and through train(): raised before anything is written
    store_path = labelled_store(tmp_path, 6, 6)
    with pytest.raises(ModelConfigError):
        train(store_path, home_for(store_path), config("model.name=resnet50"))
    _assert_nothing_written(store_path)


def test_bad_overrides_are_one_clear_line():
    with pytest.raises(ConfigError, match=r"training.max_epochs: expected an integer >= 1, got -1"):
        config("training.max_epochs=-1")
    with pytest.raises(ConfigError, match=r"metrics\.monitor: expected one of val_loss"):
        config("metrics.monitor=val_f1")
    with pytest.raises(ConfigError, match=r"trainer\.precision: expected one of 32, 32-true"):
        config("trainer.precision=64")  # Lightning has it; this loop does not


def test_config_monitors_are_the_validation_metrics_a_run_records():
    assert tuple(m for m in EPOCH_METRICS if m.startswith("val_")) == MONITORS


def test_device_choice():
    assert choose_device(config("trainer.accelerator=cpu").trainer).type == "cpu"
    with pytest.raises(ConfigError, match="one device"):
        choose_device(config("trainer.devices=2").trainer)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            choose_device(config("trainer.accelerator=gpu").trainer)
        assert choose_device(config().trainer).type in ("cpu", "mps")


def test_local_weights_file_is_loaded(tmp_path):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("convnext_atto", pretrained=False)  # with its 1000-class head
    path = tmp_path / "atto.safetensors"
    save_file(source.state_dict(), str(path))
    cfg = {"name": "convnext_atto", "pretrained": True, "weights": str(path), "freeze_stages": 0}
    model = build_model(cfg, (64, 64))
    assert torch.equal(model.backbone.stem[0].weight, source.stem[0].weight)
    assert torch.equal(
        model.backbone.stages[3].blocks[0].mlp.fc1.weight, source.stages[3].blocks[0].mlp.fc1.weight
    )

    with pytest.raises(WeightsUnavailableError, match="is not a file"):
        build_model({**cfg, "weights": str(tmp_path / "missing.safetensors")}, (64, 64))
    with pytest.raises(WeightsUnavailableError, match="cannot load the weights file"):
        build_model({**cfg, "name": "convnext_nano"}, (64, 64))  # atto weights, nano shapes


@pytest.mark.slow
def test_hub_unreachable_gives_the_way_forward(tmp_path):
    """No network: one message naming model.pretrained=false and model.weights=PATH, soon.

    huggingface_hub reads these variables at import, so the check runs in a fresh process.
    """
    script = textwrap.dedent(
        """
        from trainer.models import build_model
        from trainer.errors import WeightsUnavailableError
        try:
            build_model({"name": "convnext_atto", "pretrained": True}, (64, 64))
        except WeightsUnavailableError as exc:
            print("ERROR:", exc)
        """
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HOME": str(tmp_path / "hf"),  # an empty cache: nothing to fall back on
        "HF_HUB_ETAG_TIMEOUT": "1",
        "HF_HUB_DOWNLOAD_TIMEOUT": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("ERROR:")]
    assert len(lines) == 1, out.stdout + out.stderr
    assert "model.pretrained=false" in lines[0] and "model.weights=PATH" in lines[0]
    assert "127.0.0.1:9" in lines[0]


def test_convnext_trains_a_few_steps_and_scores(tmp_path):
    store_path = labelled_store(tmp_path, 10, 10)
    cfg = config(
        "model.name=convnext_atto",
        "model.pretrained=false",
        "training.max_epochs=1",
        "training.batch_size=8",
        name="config",
    )
    result = train(store_path, home_for(store_path), cfg)
    assert result.status == "done", result.message
    assert result.model_id.startswith("convnext_atto-")
    assert len(result.epochs) == 1 and result.epochs[0]["val_auroc"] is not None
    model, meta = load_checkpoint(result.checkpoint)
    assert isinstance(model, ConvNextClassifier) and meta["model"]["freeze_stages"] == 2
    with Store.open(store_path) as store:
        scorer = load_scorer(store.model(result.model_id))
    probs = scorer.score(np.zeros((2, 64, 64, 3), dtype=np.uint8)).probabilities
    assert probs.shape == (2,) and ((probs >= 0) & (probs <= 1)).all()


@pytest.mark.slow
def test_loader_worker_processes(tmp_path):
    """data.num_workers > 0 decodes in spawned processes (fork could deadlock the TUI)."""
    store_path = labelled_store(tmp_path, 5, 5)
    cfg = config("data.num_workers=1", "training.max_epochs=1")
    result = train(store_path, home_for(store_path), cfg)
    assert result.status == "done", result.message
    assert result.epochs[0]["val_auroc"] is not None


# -- checkpoints -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "size"),
    [
        (
            {"name": BASELINE, "channels": [8, 16], "pool": 4, "hidden": 16, "dropout": 0.3},
            (48, 40),
        ),
        (
            {"name": BASELINE, "channels": [8, 16], "pool": 0, "hidden": 16, "dropout": 0.3},
            (48, 40),
        ),
        ({"name": "convnext_atto", "pretrained": False, "freeze_stages": 1}, (64, 64)),
    ],
)
def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path, cfg, size):
    torch.manual_seed(0)
    model = build_model(cfg, size).eval()
    meta = {"model": cfg, "input_size": list(size), "threshold": 0.4, "model_id": "m"}
    meta["preprocessing"] = tdata.val_preprocessing(_data_cfg(size)).to_dict()
    path = save_checkpoint(tmp_path / "ckpt", model, meta)
    loaded, loaded_meta = load_checkpoint(path)
    x = torch.randn(4, 3, *size)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded_meta["threshold"] == 0.4 and not loaded.training
    # the folder and the weights file name the same checkpoint
    assert load_checkpoint(path.parent)[1] == load_checkpoint(path.with_suffix(".safetensors"))[1]
    # on the CPU, like the model above: CUDA convolutions may use TF32 and differ at 1e-4
    scorer = CheckpointScorer(path, device="cpu")
    assert scorer.id == "m" and scorer.default_threshold == 0.4
    pixels = np.random.default_rng(0).integers(0, 256, (3, *size, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(scorer.preprocessing.tensor(pixels))))
    np.testing.assert_allclose(scorer.score(pixels).probabilities, expected.numpy(), rtol=1e-6)


def _data_cfg(size):
    return OmegaConf.create(
        {"input_size": list(size), "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    )


# -- not enough labels -------------------------------------------------------------------------


def _assert_nothing_written(store_path: Path) -> None:
    with Store.open(store_path) as store:
        assert store.runs() == []
        assert [m for m in store.models() if m.kind == "checkpoint"] == []
    models_dir = store_path.parent / "models"
    assert not models_dir.exists() or os.listdir(models_dir) == []


@pytest.mark.parametrize(
    ("n_nsfw", "n_sfw", "message"),
    [
        (0, 0, "no labelled images to train on"),
        (0, 7, "all 7 labelled images are sfw; training needs both nsfw and sfw"),
        (3, 9, "too few labelled nsfw images: nsfw 3 (2 train, 1 val), sfw 9 (7 train, 2 val)"),
    ],
)
def test_not_enough_labels_is_one_clear_error(tmp_path, n_nsfw, n_sfw, message):
    store_path = labelled_store(tmp_path, n_nsfw, n_sfw)
    with pytest.raises(NotEnoughLabelsError) as err:
        train(store_path, home_for(store_path), config())
    assert message in str(err.value) and "\n" not in str(err.value)
    _assert_nothing_written(store_path)


def test_minimum_per_class_is_enough(tmp_path):
    store_path = labelled_store(tmp_path, 5, 5)
    result = train(store_path, home_for(store_path), config("training.max_epochs=1"))
    assert result.status == "done", result.message
    assert result.counts["train"] == {"nsfw": 4, "sfw": 4}
    assert result.counts["val"] == {"nsfw": 1, "sfw": 1}


# -- labelled samples from the store -----------------------------------------------------------


def test_labelled_samples_checks_the_files(tmp_path):
    store_path = labelled_store(tmp_path, 6, 6)
    data_dir = tmp_path / "data"
    with Store.open(store_path) as store:
        samples, skipped = tdata.labelled_samples(store)
        assert len(samples) == 12 and skipped == []
        assert sorted(s.label for s in samples) == [0] * 6 + [1] * 6
        by_path = {Path(s.path).name: s for s in samples}

        (data_dir / "nsfw" / "stripes_001.png").unlink()  # gone
        changed = data_dir / "nsfw" / "stripes_002.png"
        Image.new("RGB", (8, 8), "red").save(changed)  # other content now
        touched = data_dir / "sfw" / "blobs_001.png"
        os.utime(touched, ns=(1, 1))  # same bytes, new mtime: re-hashed and kept
        samples, skipped = tdata.labelled_samples(store)
        assert len(samples) == 10
        assert by_path["blobs_001.png"] in samples
        reasons = {Path(where).name: why for where, why in skipped}
        assert reasons == {
            "stripes_001.png": "file missing",
            "stripes_002.png": "file changed since it was labelled (different content now)",
        }

        only_sfw, skipped = tdata.labelled_samples(store, folder=data_dir / "sfw")
        assert {s.label for s in only_sfw} == {0} and len(only_sfw) == 6 and skipped == []


def test_p12_incomplete_files_are_counted_and_named_once_before_the_first_epoch(tmp_path, caplog):
    store_path = labelled_store(tmp_path, 6, 6)
    broken = [
        zero_tailed(tmp_path / "data" / "nsfw" / "partial.jpg", 0.5),
        zero_tailed(tmp_path / "data" / "sfw" / "partial.png", 0.8, seed=3),
    ]
    with Store.open(store_path) as store:  # labelled as an import did before it checked files
        for path, label in zip(broken, ("nsfw", "sfw"), strict=True):
            sha, st = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat()
            store.record_files([ScoreRecord(str(path), st.st_size, st.st_mtime_ns, sha)])
            store.set_labels([sha], label, source="import")
    events = []
    with caplog.at_level("WARNING", logger="trainer.data"):
        result = train(
            store_path,
            home_for(store_path),
            config("training.max_epochs=2"),
            on_event=events.append,
        )
    assert result.status == "done", result.message
    assert result.counts["skipped"] == 2
    starts = [e.message for e in events if e.kind == "start"]
    assert "(2 labelled images skipped)" in starts[0]
    lines = sorted(e.message for e in events if e.kind == "skipped")
    assert len(lines) == 2
    for line, path in zip(lines, sorted(broken), strict=True):
        assert line.startswith(f"skipped {path}: truncated: ") and "zeros" in line
    assert not [r for r in caplog.records if "skipping" in r.getMessage()]


def test_a_file_that_fails_to_decode_in_training_is_reported_once(tmp_path, caplog):
    # whole by its structure (every chunk and CRC is right), but its pixel data is not zlib
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
        )

    ihdr = (8).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    path = tmp_path / "corrupt.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"not zlib data")
        + chunk(b"IEND", b"")
    )
    dataset = tdata.ImageDataset([tdata.Sample("0" * 64, str(path), 1)], IMAGENET(16))
    with caplog.at_level("WARNING", logger="trainer.data"):
        for _epoch in range(3):
            assert not bool(dataset[0][2])
    assert len([r for r in caplog.records if "skipping" in r.getMessage()]) == 1
    assert list(dataset.failed) == [str(path)]


# -- import boundaries ---------------------------------------------------------------------------


def test_trainer_modules_import_without_torch_or_textual():
    script = (
        "import sys\n"
        "import trainer.run, trainer.fit, trainer.data, trainer.checkpoint, trainer.plots\n"
        "import trainer.export, trainer.parity, trainer.quantize, trainer.tracking\n"
        "print(json.dumps(sorted(m for m in ('torch', 'timm', 'textual', 'matplotlib') "
        "if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json\n" + script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


# -- MLflow ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mlflow_logs_params_metrics_and_the_checkpoint(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    store_path = labelled_store(tmp_path, 5, 5)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.chdir(tmp_path)  # the artifact store defaults to ./mlruns
    cfg = config(
        "training.max_epochs=2",
        "logging.mlflow.enabled=true",
        f"logging.mlflow.tracking_uri={uri}",
    )
    result = train(store_path, home_for(store_path), cfg)
    assert result.status == "done", result.message
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["nsfw_detection"], output_format="list")
    assert len(found) == 1
    logged = found[0]
    assert logged.data.params["training.max_epochs"] == "2"
    assert "val_loss" in logged.data.metrics
    client = mlflow.tracking.MlflowClient()
    assert len(client.get_metric_history(logged.info.run_id, "val_loss")) == 2
    names = {a.path for a in client.list_artifacts(logged.info.run_id, "checkpoint")}
    assert names == {"checkpoint/model.json", "checkpoint/model.safetensors"}
    commit = read_meta(result.checkpoint)["git_commit"]
    assert logged.data.tags.get("mlflow.source.git.commit") == commit


def test_mlflow_enabled_without_mlflow_is_one_clear_error(tmp_path):
    try:
        import mlflow  # noqa: F401

        pytest.skip("mlflow is installed")
    except ImportError:
        pass
    store_path = labelled_store(tmp_path, 5, 5)
    with pytest.raises(NsfwTuiError, match=r"logging.mlflow.enabled=true needs MLflow"):
        train(store_path, home_for(store_path), config("logging.mlflow.enabled=true"))
    _assert_nothing_written(store_path)
