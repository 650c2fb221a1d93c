"""Start-up stays light: the built-in graph is prepared once, nothing heavy loads to answer
from the cache, and a scorer's model loads only when something must be scored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.imagegen import photo_folder

import nsfw_tui.core.scorers as scorers
from nsfw_tui.core.home import resolve_home
from nsfw_tui.core.scorers import BUILTIN_ID, LazyScorer, load_builtin, prepared_builtin
from nsfw_tui.core.store import Store
from nsfw_tui.models.registry import load_scorer, resolve_model

REPO = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "pandas", "onnx", "onnxruntime", "textual", "matplotlib", "sqlite_utils"}


def test_the_prepared_built_in_graph_is_made_once_and_checked(tmp_path, monkeypatch):
    first = prepared_builtin(tmp_path)
    assert isinstance(first, Path) and first.is_file()
    made = first.stat().st_mtime_ns

    def no_onnx(data):
        raise AssertionError("the graph was prepared again")

    monkeypatch.setattr(scorers, "_with_features", no_onnx)
    assert prepared_builtin(tmp_path) == first and first.stat().st_mtime_ns == made
    monkeypatch.undo()
    damaged = bytearray(first.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    first.write_bytes(bytes(damaged))
    again = prepared_builtin(tmp_path)  # a file that fails its digest is rebuilt
    assert again == first and first.read_bytes() != bytes(damaged)


def test_the_cached_graph_scores_exactly_as_the_one_prepared_in_memory(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 255, (3, 224, 224, 3), dtype=np.uint8)
    cached = load_builtin(cache_dir=tmp_path).score(pixels)
    fresh = load_builtin().score(pixels)
    np.testing.assert_array_equal(cached.probabilities, fresh.probabilities)
    np.testing.assert_array_equal(cached.features, fresh.features)


def test_a_scorer_loads_its_model_on_the_first_batch_only(tmp_path, monkeypatch):
    loads = []
    real = scorers.load_builtin

    def counting(*args, **kwargs):
        loads.append(1)
        return real(*args, **kwargs)

    import nsfw_tui.models.registry as registry

    monkeypatch.setattr(registry, "load_builtin", counting)
    registry._builtin_cache.clear()
    with Store.open(tmp_path / "store.db") as store:
        scorer = load_scorer(resolve_model(store), cache_dir=tmp_path / "cache")
    assert isinstance(scorer, LazyScorer) and scorer.id == BUILTIN_ID and loads == []
    assert scorer.preprocessing.input_size and scorer.default_threshold == 0.2
    batch = scorer.score(np.zeros((1, 224, 224, 3), np.uint8))
    assert batch.probabilities.shape == (1,) and loads == [1]
    registry._builtin_cache.clear()


def test_missing_model_files_still_fail_before_any_work(tmp_path):
    from nsfw_tui.core.errors import NsfwTuiError

    with Store.open(tmp_path / "store.db") as store:
        store.add_model("gone", "onnx", threshold=0.5, path=str(tmp_path / "gone.onnx"))
        with pytest.raises(NsfwTuiError, match="missing"):
            load_scorer(store.model("gone"))


def test_a_warm_scan_loads_no_heavy_library(tmp_path):
    photo_folder(tmp_path / "p", 6, size=(64, 48))
    home = resolve_home(tmp_path / "home")
    cli = [sys.executable, "-m", "nsfw_tui.cli", "scan", str(tmp_path / "p"), "--home"]
    subprocess.run([*cli, str(home.root), "-o", str(tmp_path / "cold.csv")], check=True, cwd=REPO)
    code = (
        "import sys, json\n"
        "from nsfw_tui.cli import main\n"
        f"sys.argv = ['nsfw-tui', 'scan', {str(tmp_path / 'p')!r}, '--home', "
        f"{str(home.root)!r}, '-o', {str(tmp_path / 'warm.csv')!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert loaded & HEAVY == set()
    assert (tmp_path / "warm.csv").read_text() == (tmp_path / "cold.csv").read_text()
