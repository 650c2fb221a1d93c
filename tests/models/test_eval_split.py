"""`eval` says which labelled images it measured, and leaves out what a model was fitted on."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from support.scores import S, Y
from typer.testing import CliRunner

from nsfw_tui.cli import app
from nsfw_tui.core import adapt as A
from nsfw_tui.core.store import Store

SHAS = [f"{i:064x}" for i in range(len(Y))]
# The run's validation images: two NSFW (0.9, 0.35) and two SFW (0.7, 0.05) of support.scores.
VAL = [SHAS[0], SHAS[2], SHAS[4], SHAS[8]]


def run(*args: str, home):
    return CliRunner().invoke(app, [*args, "--home", str(home)])


@pytest.fixture
def fake_scorers(monkeypatch):
    """Every score comes from the store's cache: a model file is never opened."""
    from nsfw_tui.models import registry

    monkeypatch.setattr(registry, "load_scorer", lambda row, **_: SimpleNamespace(id=row.id))


def add_trained(store: Store, model_id: str, run_id: str | None) -> None:
    """A checkpoint row whose cached scores are support.scores' S, and its run's val images."""
    meta = {"run_id": run_id} if run_id else {}
    store.add_model(model_id, "checkpoint", threshold=0.2, path="/nowhere.safetensors", meta=meta)
    store.put_predictions(model_id, {s: (p, 1) for s, p in zip(SHAS, S, strict=True)})
    if run_id:
        store.insert_run(run_id, {}, {}, VAL)


def test_a_trained_model_is_measured_on_its_validation_images(scored_home, fake_scorers):
    with Store.open(scored_home / "store.db") as store:
        add_trained(store, "baseline-r1", "r1")
    out = run("eval", "--model", "baseline-r1", home=scored_home)
    assert out.exit_code == 0, out.output
    assert "baseline-r1 at threshold 0.2 on 4 labelled images" in out.output
    # at 0.2: TP 2 (0.9 0.35), FP 1 (0.7), TN 1 (0.05); piped, the matrix is tab-separated
    assert "label \\ call\tNSFW\tSFW\nNSFW\t2\t0\nSFW\t1\t1\n" in out.output
    assert not set("┃━│─┏") & set(out.output)
    assert "recall 1.0000  precision 0.6667  accuracy 0.7500" in out.output
    assert (
        "measured on 4 validation images of run r1, none of them trained on "
        "(--split all adds its training images)" in out.output
    )
    every = run("eval", "--model", "baseline-r1", "--split", "all", home=scored_home)
    assert every.exit_code == 0, every.output
    assert "baseline-r1 at threshold 0.2 on 10 labelled images" in every.output
    assert (
        "measured on all 10 labelled images, training images included: figures flatter it"
        in every.output
    )


def test_a_model_without_recorded_validation_images_says_so(scored_home, fake_scorers):
    with Store.open(scored_home / "store.db") as store:
        add_trained(store, "imported", None)
    out = run("eval", "--model", "imported", home=scored_home)
    assert out.exit_code == 0, out.output
    assert (
        "measured on all 10 labelled images: this model records no validation images, so its "
        "training images are included if any were labelled here" in out.output
    )
    val = run("eval", "--model", "imported", "--split", "val", home=scored_home)
    assert val.exit_code == 2
    assert "imported records no validation images" in val.output and "--split all" in val.output
    bad = run("eval", "--model", "imported", "--split", "test", home=scored_home)
    assert bad.exit_code == 2 and "--split must be one of val, all, got 'test'" in bad.output


def test_the_built_in_model_counts_every_labelled_image(scored_home):
    out = run("eval", home=scored_home)
    assert out.exit_code == 0, out.output
    assert (
        "measured on all 10 labelled images: the built-in model's own training data is "
        "unknown, so any labelled image counts, even one like those it learnt from" in out.output
    )


def test_an_adapted_head_is_measured_on_its_out_of_fold_scores(scored_home, fake_scorers, tmp_path):
    # The head's own scores say everything right at 0.5; its out-of-fold scores on the six
    # images it was fitted on miss one NSFW (0.1) and raise one false alarm (0.8).
    final = [0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    oof = {SHAS[0]: 0.9, SHAS[1]: 0.1, SHAS[2]: 0.7, SHAS[4]: 0.8, SHAS[5]: 0.2, SHAS[6]: 0.3}
    layers = ((np.zeros((A.DIM, 1), np.float32), np.zeros(1, np.float32)),)
    path = A.Head("logreg", layers, {"threshold": 0.5, "oof": oof}).save(tmp_path / "h.npz")
    with Store.open(scored_home / "store.db") as store:
        store.add_model("adapted-x", A.KIND, threshold=0.5, path=str(path))
        store.put_predictions("adapted-x", {s: (p, 1) for s, p in zip(SHAS, final, strict=True)})
    out = run("eval", "--model", "adapted-x", home=scored_home)
    assert out.exit_code == 0, out.output
    assert (
        "measured on out-of-fold scores: 6 images each scored by a head fitted without it, "
        "4 labelled since it was fitted (--split all scores every image with the final head, "
        "its training images included)" in out.output
    )
    # TP 3 of 4 NSFW (0.9 0.7 0.9; 0.1 missed), FP 1 of 6 SFW (0.8)
    assert "recall 0.7500  precision 0.7500  accuracy 0.8000" in out.output
    every = run("eval", "--model", "adapted-x", "--split", "all", home=scored_home)
    assert every.exit_code == 0, every.output
    assert "recall 1.0000  precision 1.0000  accuracy 1.0000" in every.output
    assert "training images included: figures flatter it" in every.output


def test_an_adapted_head_compares_only_on_images_labelled_since_it_was_fitted(
    scored_home, tmp_path
):
    from nsfw_tui.core.evaluate import comparable_images

    layers = ((np.zeros((A.DIM, 1), np.float32), np.zeros(1, np.float32)),)
    oof = {s: 0.5 for s in SHAS[:6]}  # fitted on 0-5; 6-9 labelled since
    path = A.Head("logreg", layers, {"threshold": 0.5, "oof": oof}).save(tmp_path / "h.npz")
    with Store.open(scored_home / "store.db") as store:
        store.add_model("adapted-x", A.KIND, threshold=0.5, path=str(path))
        row = store.model("adapted-x")
        unseen, why = comparable_images(store, row, [SHAS[0], SHAS[3], SHAS[4], SHAS[7]])
        assert unseen is None and why == (
            "1 of the 4 validation images are new to adapted-x too, not NSFW and SFW both"
        )
        store.set_labels([SHAS[8]], "nsfw")
        unseen, why = comparable_images(store, row, [SHAS[0], SHAS[7], SHAS[8]])
        assert unseen == {SHAS[7], SHAS[8]} and why == ""
