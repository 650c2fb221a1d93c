"""The pyfunc's scoring of paths and data URIs, and the code folder it is carried in (M9)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.core.scorers import ScoreBatch
from nsfw_tui.models.pyfunc_code import needed_modules, stage_code
from nsfw_tui.pyfunc.scoring import (
    ROOT_ENV,
    Settings,
    decode_data_uri,
    decode_pool,
    predict,
    root_from_env,
)


class Brightness:
    """A real scorer of a simple kind: P(nsfw) is the mean pixel value / 255."""

    id = "brightness"
    preprocessing = IMAGENET(16)
    default_threshold = 0.5

    def __init__(self) -> None:
        self.frames = 0

    def score(self, pixels: np.ndarray) -> ScoreBatch:
        self.frames += len(pixels)
        return ScoreBatch(pixels.reshape(len(pixels), -1).mean(axis=1) / 255.0)


def _png(path: Path, value: int) -> Path:
    Image.new("RGB", (24, 20), (value, value, value)).save(path)
    return path


def _uri(path: Path, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


SETTINGS = Settings(threshold=0.5)


def test_paths_under_the_root_and_data_uris_score_alike(tmp_path):
    bright, dark = _png(tmp_path / "bright.png", 200), _png(tmp_path / "dark.png", 40)
    scorer = Brightness()
    out = predict(
        ["bright.png", _uri(dark), str(dark), _uri(bright)], scorer, SETTINGS, str(tmp_path)
    )
    assert [o["class"] for o in out] == ["NSFW", "SFW", "SFW", "NSFW"]
    assert [o["prediction"] for o in out] == [1, 0, 0, 1]
    assert out[0]["probability"] == out[3]["probability"] == pytest.approx(200 / 255, abs=1e-6)
    assert out[1]["probability"] == out[2]["probability"] == pytest.approx(40 / 255, abs=1e-6)
    assert all("error" not in o for o in out)
    assert scorer.frames == 2  # the same bytes twice are scored once


def test_a_path_without_a_root_is_that_items_error_never_sfw(tmp_path):
    dark = _png(tmp_path / "dark.png", 10)
    out = predict([str(dark), _uri(dark)], Brightness(), SETTINGS, None)
    assert out[0] == {
        "probability": None,
        "prediction": None,
        "class": "error",
        "error": out[0]["error"],
    }
    assert out[0]["error"].startswith("refused:") and ROOT_ENV in out[0]["error"]
    assert out[1]["class"] == "SFW"


def test_unreadable_inputs_are_errors_with_their_reason(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    _png(tmp_path / "outside.png", 10)
    (root / "notes.txt").write_text("hello")
    inputs = [
        "missing.png",
        "broken.png",
        "../outside.png",
        "data:image/png;base64,@@not base64@@",
        "data:text/plain;base64," + base64.b64encode(b"hi").decode(),
        _uri(root / "notes.txt", "image/png"),
        "a\x00b",
        "",
    ]
    out = predict(inputs, Brightness(), SETTINGS, str(root))
    assert len(out) == len(inputs)
    for o in out:
        assert (o["probability"], o["prediction"], o["class"]) == (None, None, "error"), o
    kinds = [o["error"].split(":")[0] for o in out]
    assert kinds[0] == "missing" and kinds[2] == "refused" and kinds[4] == "unsupported"
    assert "outside the served root" in out[2]["error"]
    assert "base64" in out[3]["error"]


def test_decoding_in_worker_processes_gives_the_same_answers(tmp_path):
    bright = _png(tmp_path / "bright.png", 220)
    (tmp_path / "cut.png").write_bytes(bright.read_bytes()[:60])
    inputs = ["bright.png", "cut.png", _uri(bright), "gone.png"]
    in_thread = predict(inputs, Brightness(), SETTINGS, str(tmp_path))
    pool = decode_pool(Brightness(), Settings(threshold=0.5, decode_workers=1))
    try:
        in_workers = predict(inputs, Brightness(), SETTINGS, str(tmp_path), pool)
    finally:
        pool.close()
    assert in_workers == in_thread
    assert [o["class"] for o in in_workers] == ["NSFW", "error", "NSFW", "error"]
    assert in_workers[1]["error"].startswith("truncated:"), in_workers[1]


def test_the_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(ROOT_ENV, raising=False)
    assert root_from_env() is None
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "." / ""))
    assert root_from_env() == os.path.realpath(tmp_path)


def test_a_data_uri_must_be_base64():
    assert decode_data_uri("data:image/gif;charset=x;base64,aGk=") == b"hi"
    with pytest.raises(Exception, match="not a base64 data URI"):
        decode_data_uri("data:image/png,plain")


def test_the_code_folder_holds_what_predict_imports_and_no_more(tmp_path):
    modules, _ = needed_modules()
    assert {"nsfw_tui.pyfunc.scoring", "nsfw_tui.core.images", "nsfw_tui.serve.paths"} <= set(
        modules
    )
    assert not {m for m in modules if m.startswith(("nsfw_tui.cli", "nsfw_tui.tui"))}
    assert "nsfw_tui.core.store" not in modules and "nsfw_tui.serve.app" not in modules
    root = stage_code(tmp_path)
    copied = {p.relative_to(tmp_path).as_posix() for p in root.rglob("*.py")}
    assert "nsfw_tui/serve/paths.py" in copied and "nsfw_tui/serve/app.py" not in copied
    # the folder alone scores, with torch unimportable and no installed copy of the app
    _png(tmp_path / "grey.png", 128)
    script = f"""
import json, sys
sys.modules["torch"] = None
sys.path.insert(0, {str(tmp_path)!r})
from nsfw_tui.core.preprocess import IMAGENET
from nsfw_tui.core.scorers import ScoreBatch
from nsfw_tui.pyfunc.scoring import Settings, predict
class S:
    id, preprocessing, default_threshold = "s", IMAGENET(16), 0.5
    def score(self, px):
        return ScoreBatch(px.reshape(len(px), -1).mean(axis=1) / 255.0)
out = predict(["grey.png"], S(), Settings(threshold=0.5), {str(tmp_path)!r})
files = [m.__file__ for n, m in sys.modules.items() if n.split(".")[0] == "nsfw_tui"]
print(json.dumps({{"out": out, "files": files}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["out"][0]["probability"] == pytest.approx(128 / 255, abs=1e-6)
    assert got["files"] and all(f.startswith(str(root)) for f in got["files"])
