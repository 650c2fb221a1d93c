"""The review screen lists videos and previews the frame that gave a video its score."""

from __future__ import annotations

import re

import numpy as np
import pytest
from support.tui import make_test_app, screen_text, settle
from support.videogen import red_between, write_video

from nsfw_tui.tui.widgets.preview import Preview

pytest.importorskip("av")


async def test_a_video_is_listed_scored_and_previewed_at_its_highest_frame(tmp_path):
    folder = tmp_path / "photos"
    write_video(folder / "clip.mp4", colour=red_between(2.0, 2.5))  # blue, red in the middle
    app = make_test_app(tmp_path, folder, blur=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settle(pilot)
        (row,) = screen.review.rows
        assert row.path.endswith("clip.mp4") and row.probability > 0.8
        preview = screen.query_one(Preview)
        shown = np.asarray(preview.shown.convert("RGB"), dtype=np.float64)
        red, blue = shown[..., 0].mean(), shown[..., 2].mean()
        assert red > 180 and blue < 60, "the preview is the red frame, not the first one"
        text = screen_text(app)
        assert re.search(r"frame +2\.12 s \(highest\)", text)
        assert "64 x 64 MP4" in text
