"""Videos: sampled frames scored through the one pipeline, the highest frame's time kept (V1-V3)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.imagegen import save
from support.tui import RedScorer
from support.videogen import (
    BLUE,
    RED,
    cut,
    red_between,
    scribbled,
    write_audio_only,
    write_video,
    zero_tailed,
)

from nsfw_tui.core.decode_pool import decode_path
from nsfw_tui.core.errors import ImageError
from nsfw_tui.core.images import Decoded, decode_image, is_media_name
from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.core.report import COLUMNS, decisions, write_report
from nsfw_tui.core.scan import ScanOptions, scan_folder
from nsfw_tui.core.store import Store
from nsfw_tui.core.video import EXTRA_LINE, frame_at, is_video_name, sample_video, sniff_video

pytest.importorskip("av")

SPEC = IMAGENET(32)
CONTAINERS = (".mp4", ".mov", ".mkv", ".avi", ".webm")
# the red scorer's probability of a solid frame is its red channel / 255 (after yuv420p)
RED_P, BLUE_P = RED[0] / 255, BLUE[0] / 255


def red_video(folder: Path, suffix: str, start: float = 2.0, stop: float = 2.5) -> Path:
    """Four seconds of blue with red frames in [start, stop): the 'NSFW-looking' moment."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_video(folder / f"clip{suffix}", colour=red_between(start, stop))


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "home" / "store.db") as s:
        yield s


# -- sampling --------------------------------------------------------------------------------


def test_names_and_magic_bytes_tell_a_video(tmp_path):
    assert all(is_video_name(f"a/B{s.upper()}") and is_media_name(f"x{s}") for s in CONTAINERS)
    assert not is_video_name("x.jpg") and is_media_name("x.jpg") and not is_media_name("x.txt")
    found = {}
    for suffix in CONTAINERS:
        data = red_video(tmp_path, suffix).read_bytes()
        found[suffix] = sniff_video(data[:64])
    assert found == {".mp4": "MP4", ".mov": "MOV", ".mkv": "MKV", ".avi": "AVI", ".webm": "WEBM"}
    heic = Path(__file__).parents[1] / "images" / "data" / "two_halves.heic"
    assert sniff_video(heic.read_bytes()[:64]) is None, "a HEIC photo is not a video"


@pytest.mark.parametrize("suffix", CONTAINERS)
def test_frames_are_evenly_spaced_and_keep_their_real_times(tmp_path, suffix):
    path = red_video(tmp_path, suffix)
    with open(path, "rb") as fh:
        video = sample_video(fh, sniff_video(path.read_bytes()[:64]), 16)
    # 4 s at 8 fps: the middle of each of 16 quarter-second spans is a real frame time
    assert video.times == pytest.approx([(i + 0.5) / 4 for i in range(16)])
    assert (video.width, video.height) == (64, 64) and video.duration == pytest.approx(4.0)
    reds = [
        t for t, im in zip(video.times, video.frames, strict=True) if im.getpixel((9, 9))[0] > 128
    ]
    assert reds == pytest.approx([2.125, 2.375]), "the red frames are found at their own times"


def test_a_two_hour_video_costs_only_its_sampled_frames(tmp_path):
    gop = 60
    path = write_video(
        tmp_path / "film.mkv",
        seconds=7200,
        fps=1,
        size=(32, 32),
        gop=gop,
        colour=red_between(5100, 5250),
    )
    with open(path, "rb") as fh:
        video = sample_video(fh, "MKV", 16)
    assert video.n_frames == 7200 and len(video.frames) == 16
    # each target costs at most the frames from the keyframe before it: never the film
    assert video.decoded <= 16 * (gop + 1), video.decoded
    assert video.decoded < 7200 // 10
    assert any(5100 <= t < 5250 for t in video.times)


def test_a_video_frame_count_setting_samples_that_many(tmp_path):
    path = red_video(tmp_path, ".mp4")
    one = decode_path(str(path), SPEC, True, 8, 1)
    four = decode_path(str(path), SPEC, True, 8, 4)
    assert isinstance(one, Decoded) and isinstance(four, Decoded)
    assert len(one.pixels) == 1 and one.frame_times == [2.0]
    assert four.frame_times == [0.5, 1.5, 2.5, 3.5] and len(four.pixels) == 4
    assert four.format == "MP4" and four.n_frames == 32


def test_bytes_and_path_decode_alike(tmp_path):
    path = red_video(tmp_path, ".webm")
    by_path = decode_path(str(path), SPEC, True, 8, 16)
    by_bytes = decode_image(path.read_bytes(), "upload", SPEC, video_frames=16)
    assert isinstance(by_path, Decoded) and isinstance(by_bytes, Decoded)
    assert by_path.sha256 == by_bytes.sha256
    assert by_path.frame_times == by_bytes.frame_times
    assert all((a == b).all() for a, b in zip(by_path.pixels, by_bytes.pixels, strict=True))


def test_a_still_has_no_frame_times(tmp_path):
    still = save(Image.new("RGB", (40, 30), RED), tmp_path / "still.png")
    result = decode_path(str(still), SPEC, True, 8, 16)
    assert isinstance(result, Decoded) and result.frame_times is None


def test_a_video_named_like_an_image_is_still_a_video(tmp_path):
    path = red_video(tmp_path, ".mp4")
    renamed = path.rename(tmp_path / "clip.jpg")
    result = decode_path(str(renamed), SPEC, True, 8, 16)
    assert isinstance(result, Decoded) and result.format == "MP4" and len(result.pixels) == 16


def test_the_preview_frame_is_the_one_at_the_time_asked(tmp_path):
    path = red_video(tmp_path, ".mkv")
    shot = frame_at(path, 2.125)
    assert shot.times == [2.125] and shot.frames[0].getpixel((5, 5))[0] > 200
    first = frame_at(path, None)
    assert first.times == [0.0] and first.frames[0].getpixel((5, 5))[2] > 200


# -- scoring ---------------------------------------------------------------------------------


def test_every_container_is_scored_by_its_highest_frame_and_its_time_kept(tmp_path, store):
    folder = tmp_path / "videos"
    for suffix in CONTAINERS:
        write_video(folder / f"v{suffix}", colour=red_between(2.0, 2.5))
    write_video(folder / "calm.mp4", colour=lambda t: BLUE)
    save(Image.new("RGB", (48, 32), BLUE), folder / "still.png")
    scorer = RedScorer()
    result = scan_folder(folder, scorer, store, ScanOptions(workers=2, batch_size=4))
    items = {Path(i.path).name: i for i in result.items}
    assert result.errors == 0 and result.scored == 7, [(n, i.error) for n, i in items.items()]
    for suffix in CONTAINERS:
        item = items[f"v{suffix}"]
        assert item.probability == pytest.approx(RED_P, abs=0.03), suffix
        assert 2.0 <= item.frame_time < 2.5, (suffix, item.frame_time)
    assert items["calm.mp4"].probability == pytest.approx(BLUE_P, abs=0.03)
    assert items["still.png"].frame_time is None
    assert scorer.frames == 6 * 16 + 1, "16 frames of each video, one of the still"

    # the store keeps the time: a second scan answers from the cache with the same time
    again = scan_folder(folder, scorer, store, ScanOptions(workers=0))
    cached = {Path(i.path).name: i for i in again.items}
    assert again.scored == 0 and all(i.cached for i in cached.values())
    assert {n: i.frame_time for n, i in cached.items()} == {
        n: i.frame_time for n, i in items.items()
    }
    sha = items["v.mp4"].sha256
    assert store.frame_times(scorer.id, [sha, items["still.png"].sha256]) == {
        sha: items["v.mp4"].frame_time
    }
    assert store.image(sha).format == "MP4" and store.image(sha).n_frames == 32


def test_frame_time_is_the_last_csv_column_and_empty_for_stills(tmp_path, store):
    folder = tmp_path / "videos"
    red_video(folder, ".mp4")
    save(Image.new("RGB", (48, 32), RED), folder / "still.png")
    write_audio_only(folder / "song.mp4")
    result = scan_folder(folder, RedScorer(), store, ScanOptions(workers=0))
    rows = decisions(result.items, store, 0.5)
    write_report(rows, tmp_path / "out.csv")
    write_report(rows, tmp_path / "out.json")
    with open(tmp_path / "out.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == list(COLUMNS) and reader.fieldnames[-1] == "frame_time"
        got = {Path(r["image_path"]).name: r for r in reader}
    assert 2.0 <= float(got["clip.mp4"]["frame_time"]) < 2.5
    assert got["clip.mp4"]["class_name"] == "NSFW"
    assert got["still.png"]["frame_time"] == "" and got["still.png"]["class_name"] == "NSFW"
    assert got["song.mp4"]["frame_time"] == "" and got["song.mp4"]["prediction"] == ""
    as_json = {
        Path(r["image_path"]).name: r for r in json.loads((tmp_path / "out.json").read_text())
    }
    assert as_json["still.png"]["frame_time"] is None
    assert as_json["clip.mp4"]["frame_time"] == float(got["clip.mp4"]["frame_time"])


# -- bad videos (V2) -------------------------------------------------------------------------


def test_bad_videos_are_errors_with_reasons_never_safe(tmp_path, store):
    good = tmp_path / "src"
    mp4 = write_video(good / "a.mp4", faststart=True)
    mkv = write_video(good / "a.mkv", seconds=8)
    avi = write_video(good / "a.avi")
    webm = write_video(good / "a.webm", seconds=8)
    folder = tmp_path / "bad"
    folder.mkdir()
    cut(mp4, folder / "cut.mp4", 0.6)
    cut(mkv, folder / "cut.mkv", 0.5)
    zero_tailed(mp4, folder / "zeros.mp4")  # the zeros fall inside the media data
    zero_tailed(webm, folder / "zeros.webm")
    scribbled(avi, folder / "noise.avi")
    write_audio_only(folder / "song.mp4")
    (folder / "empty.webm").write_bytes(b"")
    (folder / "text.mov").write_text("not a video at all\n" * 10)
    result = scan_folder(folder, RedScorer(), store, ScanOptions(workers=1))
    got = {Path(i.path).name: i for i in result.items}
    assert result.errors == 8 and result.scored == 0
    assert all(i.probability is None for i in got.values()), "an unreadable video is never SFW"
    kinds = {n: (i.error_kind, i.error) for n, i in got.items()}
    assert kinds["cut.mp4"][0] == "truncated" and "runs past the end" in kinds["cut.mp4"][1]
    assert kinds["cut.mkv"][0] == "truncated" and "of the 8.0 s it declares" in kinds["cut.mkv"][1]
    assert kinds["zeros.mp4"][0] == "truncated", kinds["zeros.mp4"]
    assert kinds["zeros.webm"][0] == "truncated" and "frames end at" in kinds["zeros.webm"][1]
    assert kinds["noise.avi"][0] in ("corrupt", "no-video"), kinds["noise.avi"]
    assert kinds["song.mp4"] == ("no-video", "MP4 file has no video stream (audio streams only)")
    assert kinds["empty.webm"][0] == "empty"
    assert kinds["text.mov"][0] == "unidentified"
    rows = {Path(r["image_path"]).name: r for r in decisions(result.items, store, 0.5)}
    assert all(r["prediction"] is None and r["error"] for r in rows.values())


@pytest.mark.slow
def test_a_video_slower_than_its_limit_is_a_timeout_never_safe(tmp_path, store):
    folder = tmp_path / "videos"
    # one keyframe for the whole clip: each of 64 targets decodes from the first frame on
    slow = write_video(
        folder / "slow.mp4",
        seconds=30,
        fps=25,
        size=(320, 240),
        gop=100_000,
        colour=lambda t: (int(t * 8) % 256, 40, 40),
    )
    with open(slow, "rb") as fh:
        assert sample_video(fh, "MP4", 64).decoded > 10_000, "the clip is as costly as meant"
    options = ScanOptions(workers=1, timeout_s=0.05, video_frames=64)
    result = scan_folder(folder, RedScorer(), store, options)
    (item,) = result.items
    assert item.error_kind == "timeout" and item.probability is None
    assert item.error == "decoding took longer than 0.05 s"
    rows = decisions(result.items, store, 0.5)
    assert rows[0]["prediction"] is None and rows[0]["class_name"] == ""


# -- without the video extra (V3) ------------------------------------------------------------


def test_without_pyav_a_video_is_an_error_naming_the_extra(tmp_path, store, monkeypatch):
    folder = tmp_path / "videos"
    red_video(folder, ".mp4")
    red_video(folder, ".webm").rename(folder / "upload.bin.jpg")  # a video by content only
    save(Image.new("RGB", (48, 32), BLUE), folder / "still.png")
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(ImageError, match=r"pip install 'nsfw-tui\[video\]'"):
        frame_at(folder / "clip.mp4", None)
    result = scan_folder(folder, RedScorer(), store, ScanOptions(workers=0))
    got = {Path(i.path).name: i for i in result.items}
    for name in ("clip.mp4", "upload.bin.jpg"):
        assert (got[name].error_kind, got[name].error) == ("needs-extra", EXTRA_LINE), name
        assert got[name].probability is None
    assert got["still.png"].probability == pytest.approx(BLUE_P, abs=0.01)
    monkeypatch.undo()  # the extra installed: the same unchanged files are read again
    again = scan_folder(folder, RedScorer(), store, ScanOptions(workers=0))
    got = {Path(i.path).name: i for i in again.items}
    assert again.errors == 0 and again.scored == 2
    assert got["clip.mp4"].probability == pytest.approx(RED_P, abs=0.03)


def test_cli_scan_without_pyav_reports_the_extra_in_its_csv(tmp_path):
    folder = tmp_path / "videos"
    red_video(folder, ".mkv")
    blocker = tmp_path / "no_av" / "av"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('PyAV is not installed here')\n")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([str(blocker.parent), root])  # the workers get it too
    out = tmp_path / "out.csv"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "nsfw_tui.cli",
            "scan",
            str(folder),
            "-o",
            str(out),
            "--home",
            str(tmp_path / "home"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    with open(out, newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["prediction"] == "" and row["probability"] == ""
    assert row["error"] == f"needs-extra: {EXTRA_LINE}"


def test_a_video_without_an_index_is_decoded_from_the_start_and_still_sampled(tmp_path):
    path = write_video(tmp_path / "live.mkv", colour=red_between(2.0, 2.5), live=True)
    with open(path, "rb") as fh:
        video = sample_video(fh, "MKV", 16)
    assert video.duration is None
    assert video.decoded == 32, "every frame: the cost that counts against the file's limit"
    assert len(video.times) == 16 and video.times == sorted(video.times)
    assert any(2.0 <= t < 2.5 for t in video.times)
    result = decode_path(str(path), SPEC, True, 8, 16)
    assert isinstance(result, Decoded) and len(result.pixels) == 16


@pytest.mark.parametrize("turn", [90, -90, 180])
def test_a_portrait_phone_video_is_scored_and_shown_upright(tmp_path, turn):
    def halves(t: float) -> np.ndarray:  # stored sideways: red left half, blue right half
        rgb = np.empty((32, 64, 3), np.uint8)
        rgb[:, :32], rgb[:, 32:] = RED, BLUE
        return rgb

    path = write_video(tmp_path / "portrait.mov", size=(64, 32), pixels=halves, rotation=turn)
    with open(path, "rb") as fh:
        video = sample_video(fh, "MOV", 2)
    shot = frame_at(path, None)
    upright = Image.fromarray(halves(0)).rotate(turn, expand=True)  # counter-clockwise
    for image in (*video.frames, *shot.frames):
        assert image.size == upright.size
        diff = np.abs(np.asarray(image, np.int16) - np.asarray(upright, np.int16))
        assert np.median(diff) < 12, turn
    expected = (64, 32) if turn == 180 else (32, 64)
    assert (video.width, video.height) == (shot.width, shot.height) == expected


# -- labels ----------------------------------------------------------------------------------


def test_import_labels_a_whole_video_and_training_skips_it_with_its_reason(tmp_path, store):
    from nsfw_tui.core.labels import import_folders
    from trainer.data import labelled_samples

    folder = tmp_path / "dataset" / "nsfw"
    red_video(folder, ".mp4")
    cut(red_video(tmp_path / "src", ".mov"), folder / "cut.mov", 0.5)
    save(Image.new("RGB", (48, 32), RED), folder / "still.png")
    report = import_folders(store, [(folder, "nsfw")])
    assert report.labelled == {"nsfw": 2, "sfw": 0}
    assert [(Path(p).name, why.split(":")[0]) for p, why in report.errors] == [
        ("cut.mov", "truncated")
    ]
    samples, skipped = labelled_samples(store)
    assert [Path(s.path).name for s in samples] == ["still.png"]
    ((where, why),) = skipped
    assert Path(where).name == "clip.mp4"
    assert why == "video: training reads still images (MP4 is scored on its frames, not trained on)"


def test_cli_scan_table_shows_a_videos_frame_time(tmp_path):
    from typer.testing import CliRunner

    from nsfw_tui.cli import app
    from nsfw_tui.core.scorers import BUILTIN_ID

    folder = tmp_path / "videos"
    red_video(folder, ".webm")
    save(Image.new("RGB", (48, 32), BLUE), folder / "still.png")
    run = CliRunner().invoke(
        app, ["scan", str(folder), "--home", str(tmp_path / "home"), "scan.workers=0"]
    )
    assert run.exit_code == 0, run.output
    with Store.open(tmp_path / "home" / "store.db") as store:
        (at,) = store.frame_times(BUILTIN_ID, store.predictions(BUILTIN_ID)).values()
    (line,) = [ln for ln in run.output.splitlines() if "clip.webm" in ln]
    assert f" {at:.2f} s " in line, line
    (still,) = [ln for ln in run.output.splitlines() if "still.png" in ln]
    assert not re.search(r"\d s ", still), still
    assert "frame" in run.output and "2 images with open_nsfw" in run.output


def test_an_animation_named_like_a_video_keeps_the_scans_frame_limit(tmp_path):
    frames = [Image.new("RGB", (32, 32), (i * 20, 0, 0)) for i in range(10)]
    gif = tmp_path / "anim.mp4"  # a GIF under a video's name
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50)
    out = decode_path(str(gif), SPEC, True, 3)
    assert isinstance(out, Decoded) and out.format == "GIF" and len(out.pixels) == 3


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_never_opened_to_look_for_a_video(tmp_path):
    from nsfw_tui.core.media import is_video_file, load_frame

    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    assert is_video_file(fifo) is False  # returns at once: nothing writes to the FIFO
    with pytest.raises(ImageError, match="not a regular file"):
        video_fifo = fifo.with_name("y.mp4")
        os.mkfifo(video_fifo)
        load_frame(video_fifo, None)
