"""Reliability of training (docs/reliability.md, M5-M8): damage, reruns, faults, leakage."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support.trainer import config, home_for, labelled_store

from nsfw_tui.core.errors import StoreError
from nsfw_tui.core.store import Store
from nsfw_tui.models.registry import load_scorer
from trainer import data as tdata
from trainer import models
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.errors import CheckpointError
from trainer.run import train

REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]
SMALL = {"name": models.BASELINE, "channels": [4, 8], "pool": 4, "hidden": 8, "dropout": 0.0}


def _with_previous_model(store_path: Path) -> None:
    """Register and activate a model that every failed run must leave active."""
    with Store.open(store_path) as store:
        store.add_model("previous", "onnx", threshold=0.3, path="/nowhere.onnx", activate=True)


def _assert_left_as_before(store_path: Path) -> None:
    with Store.open(store_path) as store:  # check=True runs SQLite's quick_check
        assert store.active_model().id == "previous"
        assert [m.id for m in store.models()] == ["previous"]
    models_dir = store_path.parent / "models"
    assert sorted(os.listdir(models_dir)) == []


# -- M5 corrupt or truncated checkpoints -------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    model = models.build_model(SMALL, (32, 32))
    meta = {"model": SMALL, "input_size": [32, 32], "threshold": 0.5, "model_id": "m"}
    return save_checkpoint(tmp_path / "ckpt", model, meta)


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_truncated_weights_are_one_clear_error(checkpoint, fraction):
    weights = checkpoint.with_name("model.safetensors")
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="damaged or truncated") as err:
        load_checkpoint(checkpoint)
    assert "\n" not in str(err.value) and f"of {len(data)} bytes" in str(err.value)


def test_flipped_bytes_are_caught(checkpoint):
    weights = checkpoint.with_name("model.safetensors")
    data = bytearray(weights.read_bytes())
    data[10] ^= 0xFF  # inside the JSON header
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum does not match"):
        load_checkpoint(checkpoint)


def test_damage_without_a_checksum_is_still_clear(checkpoint):
    meta = json.loads(checkpoint.read_text())
    del meta["weights"]["sha256"]  # as an older or hand-made sidecar might be
    checkpoint.write_text(json.dumps(meta))
    weights = checkpoint.with_name("model.safetensors")
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(checkpoint)


def test_weights_of_the_wrong_shape_are_refused(checkpoint, tmp_path):
    other = save_checkpoint(
        tmp_path / "other",
        models.build_model({**SMALL, "channels": [6, 8]}, (32, 32)),
        {"model": SMALL, "input_size": [32, 32]},
    )
    # the other weights, with a sidecar that describes them correctly as bytes
    shutil.copy(other.with_name("model.safetensors"), checkpoint.with_name("model.safetensors"))
    meta = json.loads(checkpoint.read_text())
    meta["weights"] = json.loads(other.read_text())["weights"]
    checkpoint.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit the baseline_cnn architecture") as err:
        load_checkpoint(checkpoint)
    assert "size mismatch" in str(err.value) and "\n" not in str(err.value)


def test_damaged_or_missing_sidecar_is_clear(checkpoint):
    checkpoint.write_text(checkpoint.read_text()[:40])
    with pytest.raises(CheckpointError, match=r"model.json is damaged or truncated"):
        load_checkpoint(checkpoint.parent)
    checkpoint.unlink()
    with pytest.raises(CheckpointError, match=r"metadata .* is missing"):
        load_checkpoint(checkpoint.with_name("model.safetensors"))


def test_missing_weights_are_clear(checkpoint):
    checkpoint.with_name("model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"weights .* are missing"):
        load_checkpoint(checkpoint)


def test_registry_reports_a_damaged_checkpoint_and_the_store_is_untouched(checkpoint, tmp_path):
    store_path = tmp_path / "home" / "store.db"
    _with_previous_model(store_path)
    with Store.open(store_path) as store:
        store.add_model("trained", "checkpoint", threshold=0.5, path=str(checkpoint))
        weights = checkpoint.with_name("model.safetensors")
        weights.write_bytes(weights.read_bytes()[:-5])
        with pytest.raises(CheckpointError):
            load_scorer(store.model("trained"))
        assert store.active_model().id == "previous"


def _ruff_pickle_ban(*args: str, source: str | None = None) -> subprocess.CompletedProcess:
    """ruff's banned-api rule (TID251, configured in pyproject.toml) alone, from the repository."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "TID251", *args],
        input=source,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "source",
    [
        "import pickle",
        "from pickle import loads",
        "import cPickle",
        "import shelve",
        "import torch\n\ntorch.load('model.pt', weights_only=False)",
        "from torch import load",
    ],
)
def test_m4_ruff_refuses_a_pickle_loader_in_the_code(source):
    """M4: checkpoints are safetensors and heads .npz; ruff fails CI on any pickle loader."""
    for name in ("trainer/new.py", "nsfw_tui/models/new.py", "nsfw_tui/core/new.py"):
        out = _ruff_pickle_ban("--stdin-filename", name, "-", source=source + "\n")
        assert out.returncode == 1 and "TID251" in out.stdout, (name, out.stdout, out.stderr)


def test_m4_no_pickle_loader_in_the_code():
    out = _ruff_pickle_ban("nsfw_tui", "trainer", "benchmarks")
    assert out.returncode == 0, out.stdout + out.stderr


# -- M6 reproducibility -------------------------------------------------------------------------


def test_same_seed_gives_bitwise_identical_weights(tmp_path):
    store_path = labelled_store(tmp_path, 10, 10)
    home = home_for(store_path)
    cfg = config("training.max_epochs=2", "training.batch_size=8")
    first = train(store_path, home, cfg)
    second = train(store_path, home, cfg)
    reseeded = config("training.max_epochs=2", "training.batch_size=8", "training.seed=7")
    other = train(store_path, home, reseeded)
    assert first.status == second.status == other.status == "done"

    def weights(result):
        return load_file(str(Path(result.checkpoint).with_name("model.safetensors")))

    a, b, c = weights(first), weights(second), weights(other)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)

    def without_time(epochs):
        return [{k: v for k, v in e.items() if k != "seconds"} for e in epochs]

    assert without_time(first.epochs) == without_time(second.epochs)
    assert first.threshold == second.threshold
    assert first.val_hashes == second.val_hashes == other.val_hashes  # split seed unchanged


# -- M7 training faults -------------------------------------------------------------------------


def test_cancel_mid_epoch_leaves_nothing_behind(tmp_path):
    store_path = labelled_store(tmp_path, 20, 20)
    _with_previous_model(store_path)
    seen = []

    def stop_after_three() -> bool:
        return sum(1 for e in seen if e.kind == "batch") >= 3

    result = train(
        store_path,
        home_for(store_path),
        config("training.batch_size=4", "training.max_epochs=2"),
        activate=True,
        on_event=seen.append,
        should_stop=stop_after_three,
    )
    assert result.status == "cancelled"
    assert result.message == "cancelled at epoch 1, batch 4"
    assert result.model_id is None and result.checkpoint is None
    assert seen[-1].kind == "cancelled"
    _assert_left_as_before(store_path)
    with Store.open(store_path) as store:
        record = store.run(result.run_id)
    assert record.status == "cancelled" and record.finished_at is not None
    assert record.message == "cancelled at epoch 1, batch 4"


class _GoesNaN(torch.nn.Module):
    """Wraps a model whose outputs turn NaN from the third call on, as a diverging run does."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = self.inner(x)
        return out * float("nan") if self.calls >= 3 else out


def test_nan_loss_fails_with_the_reason(tmp_path, monkeypatch):
    store_path = labelled_store(tmp_path, 10, 10)
    _with_previous_model(store_path)
    real = models.build_model
    monkeypatch.setattr(models, "build_model", lambda cfg, size: _GoesNaN(real(cfg, size)))
    result = train(store_path, home_for(store_path), config("training.batch_size=4"), activate=True)
    assert result.status == "failed"
    assert result.message.startswith("the training loss became nan at epoch 1, batch 3")
    assert result.model_id is None
    _assert_left_as_before(store_path)
    with Store.open(store_path) as store:
        assert store.run().status == "failed"
        assert store.run().message == result.message


def test_full_disk_while_saving_keeps_the_previous_model(tmp_path, monkeypatch):
    import safetensors.torch

    store_path = labelled_store(tmp_path, 6, 6)
    _with_previous_model(store_path)

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 64)  # a partial file, as a full disk leaves
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    result = train(store_path, home_for(store_path), config("training.max_epochs=1"), activate=True)
    assert result.status == "failed"
    assert "could not be saved" in result.message and "the disk is full" in result.message
    _assert_left_as_before(store_path)
    with Store.open(store_path) as store:
        assert store.run().status == "failed" and store.run().checkpoint is None


def test_store_failure_while_registering_removes_the_checkpoint(tmp_path, monkeypatch):
    store_path = labelled_store(tmp_path, 6, 6)
    _with_previous_model(store_path)

    def busy(self, *args, **kwargs):
        raise StoreError("the store stayed busy for 30 s; nothing was written, try again")

    monkeypatch.setattr(Store, "add_model", busy)
    result = train(store_path, home_for(store_path), config("training.max_epochs=1"))
    assert result.status == "failed" and "stayed busy" in result.message
    monkeypatch.undo()
    _assert_left_as_before(store_path)


def _train_in_child(store_path: Path, marker_code: str) -> subprocess.Popen:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(TESTS)!r})
        from pathlib import Path
        from support.trainer import config, home_for
        from trainer.run import train
        {marker_code}
        path = Path({str(store_path)!r})
        train(path, home_for(path), config("training.max_epochs=3", "training.batch_size=4"),
              activate=True, on_event=on_event)
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _kill_at_marker(child: subprocess.Popen) -> None:
    """SIGKILL the child once it prints MARK (it then sleeps where it should die)."""
    try:
        for line in child.stdout:  # the child sleeps after MARK, so this cannot run away
            if line.strip() == "MARK":
                os.kill(child.pid, signal.SIGKILL)
                break
        else:
            pytest.fail(f"the child ended before the marker: {child.stderr.read()[-2000:]}")
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()


@pytest.mark.slow
def test_kill_mid_epoch_leaves_store_and_previous_model_intact(tmp_path):
    store_path = labelled_store(tmp_path, 10, 10)
    _with_previous_model(store_path)
    child = _train_in_child(
        store_path,
        """
        def on_event(event):
            if event.kind == "batch" and event.epoch == 2 and event.batch == 2:
                print("MARK", flush=True)
                time.sleep(120)
        """,
    )
    _kill_at_marker(child)
    _assert_left_as_before(store_path)
    with Store.open(store_path) as store:
        record = store.run()
    # the row says how far the run got; nothing ever marks it finished
    assert record.status == "running" and len(record.epochs) == 1


@pytest.mark.slow
def test_kill_while_saving_leaves_no_visible_checkpoint(tmp_path):
    store_path = labelled_store(tmp_path, 6, 6)
    _with_previous_model(store_path)
    child = _train_in_child(
        store_path,
        """
        import os
        real_replace = os.replace
        def slow_replace(src, dst):
            if ".part-" in str(src):
                print("MARK", flush=True)
                time.sleep(120)
            return real_replace(src, dst)
        os.replace = slow_replace
        def on_event(event):
            pass
        """,
    )
    _kill_at_marker(child)
    models_dir = store_path.parent / "models"
    parts = os.listdir(models_dir)
    assert len(parts) == 1 and parts[0].startswith(".")  # only the hidden work folder
    with Store.open(store_path) as store:
        assert store.active_model().id == "previous"
        assert [m.id for m in store.models()] == ["previous"]
    # a later run clears work folders old enough to be a dead run's
    old = time.time() - 2 * 3600
    os.utime(models_dir / parts[0], (old, old))
    result = train(store_path, home_for(store_path), config("training.max_epochs=1"))
    assert result.status == "done"
    assert os.listdir(models_dir) == [result.run_id]


# -- M8 leakage: split by content hash -----------------------------------------------------------


def _samples(n_nsfw: int, n_sfw: int) -> list[tdata.Sample]:
    return [
        tdata.Sample(f"{label}{i:04d}".ljust(64, "0"), f"/x/{label}{i}.png", label)
        for label, n in ((1, n_nsfw), (0, n_sfw))
        for i in range(n)
    ]


def test_split_is_stratified_deterministic_and_disjoint():
    samples = _samples(30, 70)
    train_set, val_set = tdata.split_samples(samples, 0.2, seed=42)
    assert tdata.class_counts(val_set) == {"nsfw": 6, "sfw": 14}
    assert tdata.class_counts(train_set) == {"nsfw": 24, "sfw": 56}
    assert not {s.sha256 for s in train_set} & {s.sha256 for s in val_set}
    shuffled = samples[:]
    random.Random(3).shuffle(shuffled)
    assert tdata.split_samples(shuffled, 0.2, seed=42) == (train_set, val_set)
    assert tdata.split_samples(samples, 0.2, seed=43)[1] != val_set
    # one more labelled image moves at most one other image across the split
    new = tdata.Sample("f" * 64, "/x/new.png", 0)
    grown_val = set(tdata.split_samples([*samples, new], 0.2, seed=42)[1])
    assert grown_val - {new} <= set(val_set)
    assert len(set(val_set) - grown_val) <= 1


def test_duplicate_content_never_sits_on_both_sides(tmp_path):
    samples = _samples(10, 10)
    twins = [tdata.Sample(s.sha256, s.path + ".copy.png", s.label) for s in samples]
    train_set, val_set = tdata.split_samples(samples + twins, 0.3, seed=1)
    assert not {s.sha256 for s in train_set} & {s.sha256 for s in val_set}
    assert len(train_set) + len(val_set) == 20

    # the same through the store: copies under new names are one image, one label
    store_path = labelled_store(tmp_path, 8, 8)
    nsfw = tmp_path / "data" / "nsfw"
    for path in sorted(nsfw.iterdir()):
        shutil.copy(path, nsfw / f"copy_of_{path.name}")
    from nsfw_tui.core.labels import import_folders

    with Store.open(store_path) as store:
        import_folders(store, [(nsfw, "nsfw")])
        found, skipped = tdata.labelled_samples(store)
    assert len(found) == 16 and skipped == []
    train_set, val_set = tdata.split_samples(found, 0.2, seed=42)
    assert not {s.sha256 for s in train_set} & {s.sha256 for s in val_set}
    result = train(store_path, home_for(store_path), config("training.max_epochs=1"))
    assert sorted(result.val_hashes) == sorted(s.sha256 for s in val_set)
