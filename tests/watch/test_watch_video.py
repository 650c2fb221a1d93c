"""An upload folder gets videos: each is scored on its sampled frames as it lands (V1, V2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.videogen import red_between, write_audio_only, write_video
from support.watch import Harness

pytest.importorskip("av")


def test_videos_that_land_are_scored_and_a_bad_one_is_an_error(tmp_path):
    staging = tmp_path / "staging"
    clip = write_video(staging / "clip.webm", colour=red_between(2.0, 2.5))
    song = write_audio_only(staging / "song.mp4")
    h = Harness(tmp_path)
    h.start()
    try:
        for made in (clip, song):  # a finished upload renamed into place
            os.rename(made, h.inbox / made.name)
        h.wait_lines(2)
    finally:
        h.stop()
    lines = h.by_name()
    video = lines["clip.webm"]
    assert video["decision"] == "nsfw" and video["probability"] > 0.8
    assert 2.0 <= video["frame_time"] < 2.5
    assert h.scorer.frames == 16, "the sampled frames, once"
    bad = lines["song.mp4"]
    assert (bad["decision"], bad["probability"]) == ("error", None)
    assert "no video stream" in bad["reason"] and "frame_time" not in bad
    assert {Path(p).name for p, _ in h.reads} == {"clip.webm", "song.mp4"}
