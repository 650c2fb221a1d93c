"""The one decision rule every face uses (scan, watch, review, serve, classify)."""

from __future__ import annotations

import numpy as np
import pytest

from nsfw_tui.core.decision import Call, count_flips, decide, is_nsfw, model_call


def test_at_the_threshold_is_nsfw_for_one_value_and_for_arrays():
    assert is_nsfw(0.2, 0.2) and not is_nsfw(0.1999, 0.2)
    assert is_nsfw([0.1, 0.2, 0.9], 0.2).tolist() == [False, True, True]
    assert is_nsfw(np.float32(0.5), 0.5)


@pytest.mark.parametrize(
    ("probability", "label", "source", "call", "prediction", "class_name", "by"),
    [
        (0.9, None, "human", Call.NSFW, 1, "NSFW", "model"),
        (0.1, None, "human", Call.SFW, 0, "SFW", "model"),
        (None, None, "human", Call.ERROR, None, "", "error"),  # unreadable is never safe
        (0.9, "sfw", "human", Call.SFW, 0, "SFW", "human"),  # a label outranks the model
        (None, "nsfw", "import", Call.NSFW, 1, "NSFW", "import"),
    ],
)
def test_decide(probability, label, source, call, prediction, class_name, by):
    d = decide(probability, 0.5, label, source)
    assert (d.call, d.prediction, d.class_name, d.source) == (call, prediction, class_name, by)
    assert d.call.value in ("nsfw", "sfw", "error")


def test_model_call_and_flips():
    assert model_call(None, 0.3) is Call.ERROR and model_call(0.3, 0.3) is Call.NSFW
    before = {"a": 0.1, "b": 0.6, "c": 0.4}
    after = {"a": 0.7, "b": 0.2, "d": 0.9}
    assert count_flips(before, 0.5, after, 0.5) == {"to_nsfw": 1, "to_sfw": 1, "compared": 2}
