"""The Ray engine on a real local Ray: parity with the local scan, faults, resume, URIs, import."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from support.imagegen import photo, photo_folder, save
from support.scale import bytes_decoder, mixed_folder, parts_rows

from nsfw_tui.core.decision import decide
from nsfw_tui.core.scan import ScanOptions, scan_folder
from nsfw_tui.models.registry import load_scorer
from nsfw_tui.scale.bundle import bundle_for
from nsfw_tui.scale.engine import EngineOptions, run_scan
from nsfw_tui.scale.outdir import OutDir
from nsfw_tui.scale.sources import plan_source
from nsfw_tui.scale.worker import DecodeSettings

# Each test runs Ray work of several seconds (the shared Ray itself starts in about 9 s).
pytestmark = [pytest.mark.usefixtures("local_ray"), pytest.mark.slow]


def _run(source: str, out: str, row, **kwargs):
    options = kwargs.pop("options", None) or EngineOptions(workers=2, batch_size=8)
    return run_scan(
        plan_source(source), OutDir.open(out), bundle_for(row), row.threshold, options, **kwargs
    )


def _once(rows: list[dict]) -> dict[str, dict]:
    keys = Counter(r["image_path"] for r in rows)
    assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]
    return {r["image_path"]: r for r in rows}


def test_ray_scores_200_files_like_the_local_scan(tmp_path, store, builtin_row):
    expect = mixed_folder(tmp_path / "src", 191)
    assert len(expect) == 200
    local = scan_folder(
        tmp_path / "src", load_scorer(builtin_row), store, ScanOptions(workers=1), save=False
    )
    summary = _run(str(tmp_path / "src"), str(tmp_path / "out"), builtin_row)
    assert summary.written == 200 and not summary.cancelled
    rows = _once(parts_rows(tmp_path / "out"))
    assert set(rows) == set(expect)
    diffs = []
    for item in local.items:
        row = rows[item.path]
        assert row["error_kind"] == item.error_kind == expect[item.path], item.path
        if item.probability is None:  # an unreadable file never gets a probability
            assert row["probability"] is None and row["prediction"] is None
            continue
        diffs.append(abs(row["probability"] - item.probability))
        assert row["prediction"] == decide(item.probability, 0.2).prediction
        assert row["sha256"] == item.sha256
    assert len(diffs) == 195
    assert max(diffs) <= 1e-5


def test_a_stopped_run_resumes_and_each_input_lands_once(tmp_path, builtin_row):
    photo_folder(tmp_path / "src", 12, size=(48, 40))
    out = tmp_path / "out"
    options = EngineOptions(workers=1, batch_size=2, part_rows=1)
    first = _run(
        str(tmp_path / "src"), str(out), builtin_row, options=options, should_stop=lambda: True
    )
    assert first.cancelled and 0 < first.written < 12
    kept = parts_rows(out)
    assert len(_once(kept)) == first.written  # what was listed before the stop is whole
    # A part written but never listed, as a run killed between the two steps leaves it.
    (out / "part-orphan-00000.parquet").write_bytes(b"half a part")
    second = _run(str(tmp_path / "src"), str(out), builtin_row)
    assert second.orphans == 1 and not (out / "part-orphan-00000.parquet").exists()
    assert second.already == first.written and second.written == 12 - first.written
    rows = _once(parts_rows(out))
    assert len(rows) == 12 and all(r["probability"] is not None for r in rows.values())
    assert _run(str(tmp_path / "src"), str(out), builtin_row).written == 0
    # The same OUT with other answers would mix them: refused, before any work.
    from dataclasses import replace

    from nsfw_tui.core.errors import NsfwTuiError

    with pytest.raises(NsfwTuiError, match=r"scored at threshold 0\.2, not 0\.5"):
        _run(str(tmp_path / "src"), str(out), replace(builtin_row, threshold=0.5))
    with pytest.raises(NsfwTuiError, match="holds scores by model 'open_nsfw', not 'other'"):
        _run(str(tmp_path / "src"), str(out), replace(builtin_row, id="other"))


def _kill_one_score_worker() -> int | None:
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "ScoreWorker" in cmd and proc.pid != os.getpid():
            os.kill(proc.pid, signal.SIGKILL)
            return proc.pid
    return None


def test_a_killed_worker_process_loses_and_repeats_nothing(tmp_path, builtin_row):
    photo_folder(tmp_path / "src", 24, size=(48, 40))
    killed: list[int] = []

    def kill_once(progress) -> None:
        if not killed and progress.done:
            pid = _kill_one_score_worker()
            if pid:
                killed.append(pid)

    options = EngineOptions(workers=2, batch_size=2, part_rows=1)
    summary = _run(
        str(tmp_path / "src"),
        str(tmp_path / "out"),
        builtin_row,
        options=options,
        on_progress=kill_once,
    )
    assert killed, "no scoring worker process was found to kill"
    rows = _once(parts_rows(tmp_path / "out"))
    assert len(rows) == 24 == summary.written
    assert all(r["probability"] is not None for r in rows.values())


def test_a_hang_and_a_crash_cost_only_their_own_file(tmp_path, builtin_row):
    src = tmp_path / "src"
    photo_folder(src, 4, size=(48, 40))
    save(photo((48, 40), 9), src / "hang.jpg")
    save(photo((48, 40), 8), src / "crash.jpg")
    decode = DecodeSettings(timeout_s=2.0, decoder=bytes_decoder)
    options = EngineOptions(workers=1, batch_size=3, decode=decode)
    summary = _run(str(src), str(tmp_path / "out"), builtin_row, options=options)
    rows = _once(parts_rows(tmp_path / "out"))
    assert summary.written == 6 and summary.errors == 2
    assert rows[str(src / "hang.jpg")]["error_kind"] == "timeout"
    assert rows[str(src / "crash.jpg")]["error_kind"] == "crash"
    assert rows[str(src / "hang.jpg")]["probability"] is None
    assert sum(r["probability"] is not None for r in rows.values()) == 4


def _shard(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w") as tar:
        for i, name in enumerate(names):
            buf = io.BytesIO()
            photo((40, 32), 100 + i).save(buf, "JPEG")
            info = tarfile.TarInfo(name)
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path


def test_uris_manifests_and_shards_through_a_pyarrow_file_system(tmp_path, builtin_row):
    """file:// stands in for an object store: the same pyarrow file system interface."""
    src = tmp_path / "bucket"
    files = photo_folder(src / "photos", 3, size=(48, 40))
    (src / "photos" / "gone.jpg").write_bytes(b"")
    manifest = tmp_path / "list.csv"
    uris = [f"file://{p}" for p in files] + [f"file://{src}/photos/missing.jpg"]
    manifest.write_text("uri,label\n" + "".join(f"{u},x\n" for u in uris))
    out_uri = f"file://{tmp_path}/out"
    summary = _run(str(manifest), out_uri, builtin_row)
    rows = _once(parts_rows(tmp_path / "out"))
    assert set(rows) == set(uris)
    assert rows[uris[-1]]["error_kind"] == "missing"
    assert summary.written == 4 and summary.errors == 1

    (src / "shards").mkdir()
    _shard(src / "shards" / "a.tar", ["0001.jpg", "0002.jpg", "notes.txt"])
    (src / "shards" / "b.tar").write_bytes(b"not a tar file" * 100)
    _run(f"file://{src}/shards", f"file://{tmp_path}/shards_out", builtin_row)
    rows = _once(parts_rows(tmp_path / "shards_out"))
    a = f"file://{src}/shards/a.tar"
    assert set(rows) == {f"{a}#0001.jpg", f"{a}#0002.jpg", f"file://{src}/shards/b.tar"}
    assert rows[f"{a}#0001.jpg"]["probability"] is not None
    assert rows[f"file://{src}/shards/b.tar"]["error_kind"] == "unreadable"
    done = json.loads((tmp_path / "shards_out" / "_manifest.json").read_text())["shards"]
    assert sorted(done) == [a, f"file://{src}/shards/b.tar"]
    again = _run(f"file://{src}/shards", f"file://{tmp_path}/shards_out", builtin_row)
    assert again.written == 0


def test_import_scores_fills_the_store_so_a_local_scan_rescores_nothing(tmp_path, home):
    from typer.testing import CliRunner

    from nsfw_tui.cli.root import app
    from nsfw_tui.core.adapt_features import cached_features
    from nsfw_tui.core.store import Store

    src = tmp_path / "src"
    photo_folder(src, 5, size=(48, 40))
    (src / "broken.jpg").write_bytes(b"garbage")
    runner = CliRunner()
    out = tmp_path / "out"
    args = ["scan", str(src), "--engine", "ray", "-o", str(out), "--features", "--home", str(home)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "6 inputs with open_nsfw" in result.output
    result = runner.invoke(app, ["import-scores", str(out), "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "imported 6 images" in result.output and "5 with features" in result.output
    with Store.open(home / "store.db") as store:
        scored = load_scorer(store.model("open_nsfw"))
        feats = cached_features(store)
        assert len(feats.shas) == 5 and feats.frames.dtype == np.float16
        again = scan_folder(src, scored, store, ScanOptions(workers=1))
    assert again.scored == 0 and again.reused == 6  # the broken file's error is reused too
    by_path = {i.path: i for i in again.items}
    assert by_path[str(src / "broken.jpg")].error_kind == "unidentified"

    # A small run's CSV: the local scan's columns, a person's label outranking the model.
    with Store.open(home / "store.db") as store:
        store.set_labels([by_path[str(src / "img_000.jpg")].sha256], "nsfw")
    csv_args = ["scan", str(src), "--engine", "ray", "-o", str(tmp_path / "p.csv")]
    result = runner.invoke(app, [*csv_args, "--home", str(home)])
    assert result.exit_code == 0, result.output
    import csv

    with open(tmp_path / "p.csv", newline="") as fh:
        table = {r["image_path"]: r for r in csv.DictReader(fh)}
    assert len(table) == 6
    assert list(next(iter(table.values()))) == [
        "image_path",
        "probability",
        "prediction",
        "class_name",
        "error",
        "label",
        "frame_time",
    ]
    labelled = table[str(src / "img_000.jpg")]
    assert (labelled["label"], labelled["prediction"], labelled["class_name"]) == (
        "nsfw",
        "1",
        "NSFW",
    )
    assert table[str(src / "broken.jpg")]["error"].startswith("unidentified: ")
    assert table[str(src / "broken.jpg")]["probability"] == ""


def _tiny_onnx(path: Path) -> Path:
    """A real ONNX classifier: the sigmoid of the mean normalised pixel, shape (N,)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sigmoid", ["m"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_an_onnx_model_and_an_adapted_head_score_as_locally(tmp_path, store):
    from nsfw_tui.core.adapt_head import Head
    from nsfw_tui.core.preprocess import IMAGENET
    from nsfw_tui.core.scorers import ensure_builtin

    ensure_builtin(store)
    store.add_model(
        "tiny",
        "onnx",
        threshold=0.5,
        path=str(_tiny_onnx(tmp_path / "tiny.onnx")),
        preprocessing=IMAGENET(32).to_dict(),
        meta={"output": "probability"},
    )
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (1024, 1)).astype(np.float32)
    head = Head("logreg", ((w, np.array([0.5], np.float32)),))
    store.add_model("adapted-x", "adapted", threshold=0.4, path=str(head.save(tmp_path / "h.npz")))
    src = tmp_path / "src"
    photo_folder(src, 6, size=(64, 48))
    for model_id in ("tiny", "adapted-x"):
        row = store.model(model_id)
        local = scan_folder(src, load_scorer(row), store, ScanOptions(workers=1), save=False)
        _run(str(src), str(tmp_path / f"out-{model_id}"), row)
        rows = _once(parts_rows(tmp_path / f"out-{model_id}"))
        probs = [i.probability for i in local.items]
        assert max(probs) - min(probs) > 1e-3  # the images get different scores
        for item in local.items:
            assert abs(rows[item.path]["probability"] - item.probability) <= 1e-5
            assert rows[item.path]["model"] == model_id
            assert (
                rows[item.path]["prediction"] == decide(item.probability, row.threshold).prediction
            )


def test_a_read_that_keeps_failing_stops_the_run_with_one_line(tmp_path, builtin_row):
    from support.scale import failing_fs

    from nsfw_tui.core.errors import NsfwTuiError
    from nsfw_tui.scale.sources import Entry, Plan

    files = photo_folder(tmp_path / "src", 3, size=(48, 40))
    files.append(save(photo((48, 40), 7), tmp_path / "src" / "refuse.jpg"))
    plan = Plan(str(tmp_path / "src"), failing_fs(), "")
    plan.files = [Entry(str(p), str(p), p.stat().st_size, 0) for p in files]
    out = OutDir.open(str(tmp_path / "out"))
    options = EngineOptions(workers=1, batch_size=1)
    with pytest.raises(NsfwTuiError, match=r"the Ray run stopped: .*access denied by the store"):
        run_scan(plan, out, bundle_for(builtin_row), 0.2, options)
    rows = _once(parts_rows(tmp_path / "out"))  # OUT stays readable, whatever it holds
    assert str(tmp_path / "src" / "refuse.jpg") not in rows
