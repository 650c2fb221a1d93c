"""`serve` takes videos, by path or uploaded within its body limit, scored on sampled frames."""

from __future__ import annotations

import httpx
import pytest
from support.serve import FakeScorer, b64, live_server
from support.videogen import red_between, write_audio_only, write_video

from nsfw_tui.serve import create_app

pytest.importorskip("av")

LIMIT = 64 * 1024


def test_videos_by_path_and_upload_carry_their_best_frame_time(tmp_path):
    root = tmp_path / "library"
    clip = write_video(root / "clip.mkv", colour=red_between(2.0, 2.5))
    write_audio_only(root / "song.mp4")
    app = create_app(FakeScorer(), threshold=0.5, root=root, max_body_bytes=LIMIT)
    with live_server(app) as live, httpx.Client(base_url=live.url, timeout=60) as client:
        by_path = client.post("/invocations", json={"inputs": ["clip.mkv", "song.mp4"]})
        data = clip.read_bytes()
        upload = client.post(
            "/invocations", files=[("files", ("clip.mkv", data, "video/x-matroska"))]
        )
        by_b64 = client.post("/invocations", json={"images": [b64(data)]})
        too_big = client.post(
            "/invocations", files=[("files", ("big.mkv", data + bytes(LIMIT), "video/x-matroska"))]
        )
    assert by_path.status_code == upload.status_code == by_b64.status_code == 200
    video, song = by_path.json()["predictions"]
    assert video["class"] == "NSFW" and 2.0 <= video["frame_time"] < 2.5
    assert upload.json()["predictions"] == by_b64.json()["predictions"] == [video]
    assert song["class"] == "error" and song["error"].startswith("no-video: ")
    assert "frame_time" not in song
    assert too_big.status_code == 413
