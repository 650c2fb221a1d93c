"""Adaptation: a head on the cached built-in features; CV, decisions, rescoring, file, export."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from support.imagegen import animated_gif, family_image, save
from typer.testing import CliRunner

from nsfw_tui.cli import app as cli_app
from nsfw_tui.core import adapt as A
from nsfw_tui.core.metrics import auroc
from nsfw_tui.core.scan import ScanOptions, scan_files, scan_folder
from nsfw_tui.core.scorers import BUILTIN_ID, ensure_builtin, load_builtin
from nsfw_tui.core.store import ScoreRecord, Store

# -- image families the built-in network gets wrong in a systematic way ----------------------
# Measured with load_builtin() before writing these tests (128 px, 60 of each):
#   blob   skin-toned smooth blobs on a light ground: median P 0.45, 65% called NSFW at 0.2
#   dark   two larger skin blobs with a dark spot, on a dark ground: median P 0.42
#   photo  imagegen.photo: median P 0.004, never NSFW
# The labels call blobs SFW (the built-in network is wrong on them), dark NSFW, photos SFW
# (the built-in network is right).
TRUTH = {"blob": "sfw", "dark": "nsfw", "photo": "sfw"}
LABELLED = 12  # per family: 36 labels


def draw_families(folder: Path, per_family: int, prefix: str = "") -> dict[Path, str]:
    """``per_family`` images of each family; returns path -> family."""
    out = {}
    for family in TRUTH:
        for i in range(per_family):
            out[save(family_image(family, i), folder / f"{prefix}{family}_{i:03d}.png")] = family
    return out


def family_of(path: str) -> tuple[str, int]:
    family, index = Path(path).stem.split("_")[-2:]
    return family, int(index)


@pytest.fixture(scope="module")
def builtin():
    return load_builtin()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, builtin) -> Path:
    """A store holding 30 images of each family scored by the built-in network (features)."""
    root = tmp_path_factory.mktemp("families")
    draw_families(root / "photos", 30)
    with Store.open(root / "store.db") as store:
        ensure_builtin(store)
        scan_folder(root / "photos", builtin, store, ScanOptions(workers=0))
    return root


@pytest.fixture
def home(home, scanned) -> Path:
    """The shared home (tests/conftest.py), holding a copy of the scanned store."""
    (home / "models").mkdir(parents=True)
    shutil.copy(scanned / "store.db", home / "store.db")
    return home


def label(store: Store, choose) -> None:
    """Label every image whose (family, index) ``choose`` maps to a label."""
    by_label: dict[str, list[str]] = {}
    for r in store._rows("SELECT path, sha256 FROM files"):
        chosen = choose(*family_of(r["path"]))
        if chosen:
            by_label.setdefault(chosen, []).append(r["sha256"])
    for value, shas in by_label.items():
        store.set_labels(shas, value)


def families(store: Store) -> dict[str, tuple[str, int]]:
    return {
        r["sha256"]: family_of(r["path"]) for r in store._rows("SELECT path, sha256 FROM files")
    }


# -- the head learns what the labels say ------------------------------------------------------


def test_a_few_dozen_labels_move_the_calls_the_right_way(home):
    with Store.open(home / "store.db") as store:
        label(store, lambda fam, i: TRUTH[fam] if i < LABELLED else None)
        result = A.adapt(store, home / "models")
        builtin = store.predictions(BUILTIN_ID)
        fams = families(store)
        assert store.active_model().id == result.model_id

    assert result.activated, result.decision
    assert result.labels == {"nsfw": LABELLED, "sfw": 2 * LABELLED}
    assert result.cv["auroc"] > result.builtin["auroc"] + 0.2
    assert result.cv["recall"] >= 0.95
    held_out = [s for s, (_, i) in fams.items() if i >= LABELLED]
    y = [TRUTH[fams[s][0]] == "nsfw" for s in held_out]
    new = [result.predictions[s] for s in held_out]
    old = [builtin[s] for s in held_out]
    assert auroc(y, new) > auroc(y, old) + 0.1
    print(f"\nheld-out AUROC {auroc(y, new):.3f} (built-in {auroc(y, old):.3f})")

    def called_nsfw(family: str, scores: dict, threshold: float) -> float:
        shas = [s for s in held_out if fams[s][0] == family]
        return float(np.mean([scores[s] >= threshold for s in shas]))

    # the family the built-in network gets wrong moves to SFW, the NSFW family stays caught
    assert called_nsfw("blob", builtin, 0.2) >= 0.5
    assert called_nsfw("blob", result.predictions, result.threshold) <= 0.1
    assert called_nsfw("dark", result.predictions, result.threshold) >= 0.9
    # where the labels agree with the built-in network, at most 2% of its calls flip
    photos = [s for s in fams if fams[s][0] == "photo"]
    flipped = [(builtin[s] >= 0.2) != (result.predictions[s] >= result.threshold) for s in photos]
    assert np.mean(flipped) <= 0.02
    assert result.flips["compared"] == len(fams) and result.rescored == len(fams)


def test_stays_inactive_when_it_does_not_beat_the_active_model(home):
    with Store.open(home / "store.db") as store:
        builtin = store.predictions(BUILTIN_ID)
        fams = families(store)
        # labels the built-in network already ranks perfectly: its AUROC is 1.0
        blobs = sorted((s for s in fams if fams[s][0] == "blob"), key=builtin.get)[-8:]
        photos = [s for s in fams if fams[s][0] == "photo"][:8]
        assert min(builtin[s] for s in blobs) > max(builtin[s] for s in photos)
        store.set_labels(blobs, "nsfw")
        store.set_labels(photos, "sfw")
        result = A.adapt(store, home / "models")
        assert not result.activated
        assert store.active_model().id == BUILTIN_ID
        assert "stays active" in result.decision
        # registered and rescored all the same, so it can be chosen by hand
        row = store.model(result.model_id)
        assert row.kind == "adapted" and not row.active
        assert len(store.predictions(result.model_id)) == len(fams)


def test_too_few_labels_say_how_many_more(home):
    with Store.open(home / "store.db") as store:
        label(store, lambda fam, i: TRUTH[fam] if i < 3 else None)  # 3 NSFW, 6 SFW
        with pytest.raises(A.NotEnoughLabels, match="2 more NSFW needed") as exc:
            A.adapt(store, home / "models")
        assert exc.value.needed == {"nsfw": 2, "sfw": 0}
        assert [m.kind for m in store.models()] == ["builtin"]


# -- cross-validation on synthetic features ---------------------------------------------------


def test_cross_validation_never_scores_an_image_with_its_own_label():
    # Random features and random labels: a weakly regularised head memorises its training
    # images (in-sample AUROC 1), so out-of-fold scores near chance show no label leaked.
    rng = np.random.default_rng(3)
    x = np.abs(rng.normal(size=(60, A.DIM))).astype(np.float16)
    y = rng.permutation(np.repeat([0, 1], 30))
    fit = A.fit_head(x, np.arange(60), y, A.Settings(c_grid=(10.0,)))
    assert auroc(y, fit.head.predict(x)) == 1.0
    assert auroc(y, fit.cv_probs) < 0.75


def test_frames_of_one_image_stay_in_one_fold_and_its_highest_frame_counts():
    rng = np.random.default_rng(4)
    counts = rng.integers(1, 4, size=40)  # 1 to 3 frames per image
    owner = np.repeat(np.arange(40), counts)
    x = np.abs(rng.normal(size=(len(owner), A.DIM))).astype(np.float16)
    y = np.repeat([0, 1], 20)
    fit = A.fit_head(x, owner, y, A.Settings(folds=4))
    assert sorted(np.bincount(fit.folds)) == [10, 10, 10, 10]
    for cls in (0, 1):
        assert len(set(np.bincount(fit.folds[y == cls]))) == 1  # stratified
    per_frame = fit.head.predict(x)
    assert np.allclose(
        A.image_max(per_frame, owner, 40), [per_frame[owner == i].max() for i in range(40)]
    )


def test_one_sample_per_image_whatever_caches_its_features(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        ensure_builtin(store)
        store.add_model("adapted-x", "adapted", threshold=0.5, path=None)
        f = np.ones((1, A.DIM), np.float16)
        three_frames = 2 * np.ones((3, A.DIM))
        records = [
            ScoreRecord("/a.png", 1, 1, "aa", 0.1, BUILTIN_ID, features=f),
            ScoreRecord("/b.png", 1, 1, "aa", 0.2, "adapted-x", features=three_frames),
            ScoreRecord("/c.png", 1, 1, "cc", 0.3, "adapted-x", features=3 * f),
            ScoreRecord("/d.png", 1, 1, "dd", 0.3, "checkpoint-y", features=4 * f),
        ]
        store.record_files(records)
        feats = A.cached_features(store)
    assert feats.shas == ["aa", "cc"]  # "dd" came from a model that is not the built-in network
    assert feats.counts.tolist() == [1, 1]  # the built-in's own copy wins for "aa"
    assert feats.frames[:, 0].tolist() == [1.0, 3.0]


# -- the file, a fresh home, animations and the export ----------------------------------------


def test_the_file_alone_reproduces_the_scores_in_a_fresh_home(home, tmp_path, builtin):
    from nsfw_tui.models.registry import load_scorer

    folder = tmp_path / "more"
    draw_families(folder, 2, prefix="new_")
    animated_gif(folder / "anim.gif", [(20, 30, 40), (225, 170, 140), (200, 200, 200)])
    with Store.open(home / "store.db") as store:
        label(store, lambda fam, i: TRUTH[fam] if i < 8 else None)
        result = A.adapt(store, home / "models")
        row = store.model(result.model_id)
        # new files: the network and the head together, in the normal pipeline
        scan_folder(folder, load_scorer(row), store, ScanOptions(workers=0))
        here = store.predictions(row.id)
        gif_sha = store.files([str(folder / "anim.gif")])[str(folder / "anim.gif")].sha256
        frames = store.features(row.id, gif_sha)
        assert frames.shape == (3, A.DIM)  # cached under the adapted id, found by the next fit
        head = A.load_head(row.path)
        assert here[gif_sha] == pytest.approx(float(head.predict(frames).max()), abs=1e-6)
        assert gif_sha in A.cached_features(store).shas
        assert A.rescore(store, head, row.id)[gif_sha] == pytest.approx(here[gif_sha], abs=1e-6)

    fresh = tmp_path / "fresh"
    copied = shutil.copy(row.path, tmp_path / "elsewhere.npz")
    with Store.open(fresh / "store.db") as store:
        ensure_builtin(store)
        again = A.register_head(store, copied)
        assert (again.id, again.threshold) == (row.id, row.threshold)
        items = scan_folder(folder, load_scorer(again), store, ScanOptions(workers=0)).items
    for item in items:
        assert item.probability == pytest.approx(here[item.sha256], abs=1e-6)


def test_head_file_is_npz_with_json_metadata_and_no_pickle(tmp_path):
    layers = (
        (np.ones((A.DIM, 4), np.float32), np.zeros(4, np.float32)),
        (np.ones((4, 1), np.float32), np.zeros(1, np.float32)),
    )
    head = A.Head("mlp", layers, meta={"threshold": 0.3})
    path = head.save(tmp_path / "h.npz")
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["b0", "b1", "meta", "w0", "w1"]
    loaded = A.load_head(path)
    assert loaded.digest == head.digest and loaded.meta["threshold"] == 0.3
    np.savez(tmp_path / "bad.npz", meta=np.array([{"format": A.FORMAT}], dtype=object))
    with pytest.raises(A.NsfwTuiError, match="not an adapted-model file"):
        A.load_head(tmp_path / "bad.npz")


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_export_matches_the_in_app_scores(home, tmp_path, kind):
    import onnx

    from nsfw_tui.core.preprocess import OPEN_NSFW
    from nsfw_tui.core.scorers import OnnxScorer
    from nsfw_tui.models.adapted_onnx import export_adapted

    with Store.open(home / "store.db") as store:
        label(store, lambda fam, i: TRUTH[fam] if i < LABELLED else None)
        result = A.adapt(store, home / "models", A.Settings(kind=kind))
        row = store.model(result.model_id)
        path = export_adapted(row, tmp_path / "adapted.onnx")
        props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
        assert props["model_id"] == row.id and float(props["threshold"]) == row.threshold
        exported = OnnxScorer("exported", path, OPEN_NSFW, output=props["output"])
        paths = [p for p in store._rows("SELECT path FROM files")][::9]
        items = scan_files([p["path"] for p in paths], exported, store, ScanOptions(workers=0))
        cached = store.predictions(row.id)  # the rescore from float16 features
    diffs = [abs(i.probability - cached[i.sha256]) for i in items.items]
    print(f"\n{kind}: export vs in-app over {len(diffs)} images: max |dp| {max(diffs):.2e}")
    assert len(diffs) >= 10 and max(diffs) <= 2e-3


# -- the command ------------------------------------------------------------------------------


def test_train_adapt_command(home):
    runner = CliRunner()
    args = ["train", "--config-name", "adapt", "--home", str(home)]
    with Store.open(home / "store.db") as store:
        label(store, lambda fam, i: TRUTH[fam] if i < 3 else None)
    few = runner.invoke(cli_app, args)
    assert few.exit_code == 2 and "2 more NSFW needed" in few.output
    with Store.open(home / "store.db") as store:
        label(store, lambda fam, i: TRUTH[fam] if i < 6 else None)
    done = runner.invoke(cli_app, [*args, "adapt.kind=logreg"])
    assert done.exit_code == 0, done.output
    assert "now active" in done.output and "cross-validated" in done.output
    with Store.open(home / "store.db") as store:
        head = store.active_model()
    n = sum(head.meta["labels"].values())
    assert f"active model: open_nsfw -> {head.id}, fitted on {n} labels" in done.output
    measured = runner.invoke(cli_app, ["eval", "--home", str(home)])
    assert measured.exit_code == 0, measured.output
    assert f"{head.id} at threshold {head.threshold:.4g} on {n} labelled images" in measured.output
    assert (
        f"measured on out-of-fold scores: {n} images each scored by a head fitted without it, "
        "0 labelled since it was fitted" in measured.output
    )
    bad = runner.invoke(cli_app, [*args, "adapt.kind=svm"])
    assert bad.exit_code == 2 and "adapt.kind" in bad.output
