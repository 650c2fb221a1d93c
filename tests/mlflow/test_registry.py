"""The MLflow path end to end (M9): a run registers a pyfunc; load it, serve it, bring it back."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support.export import cli, error_lines
from support.trainer import config, home_for, labelled_store, write_family

from nsfw_tui.core import adapt as A
from nsfw_tui.core.store import Store
from trainer.run import train

mlflow = pytest.importorskip("mlflow")

NAME = "nsfw_detection_model"
ATOL = 1e-5
# the server needs its tracking store and no network; MLflow's own telemetry stays off
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A tiny baseline trained with tracking on: (tmp, home, run result, tracking URI)."""
    tmp = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{tmp / 'mlruns.db'}"
    with pytest.MonkeyPatch.context() as env:
        for key, value in {**QUIET, "MLFLOW_TRACKING_URI": uri}.items():
            env.setenv(key, value)
        # an absolute artifact root: every process (server, loader) finds the same files
        mlflow.MlflowClient(uri).create_experiment(
            "nsfw_detection", artifact_location=(tmp / "artifacts").as_uri()
        )
        store_path = labelled_store(tmp, 16, 16)
        cfg = config(
            "data.input_size=[48,48]",
            "training.max_epochs=2",
            "logging.mlflow.enabled=true",
            f"logging.mlflow.tracking_uri={uri}",
        )
        events = []
        result = train(store_path, home_for(store_path), cfg, activate=True, on_event=events.append)
        assert result.status == "done", result.message
        assert [e.kind for e in events][-2:] == ["registering", "done"]
        yield tmp, store_path.parent, result, uri


def _images(tmp: Path) -> list[Path]:
    return sorted((tmp / "data").rglob("*.*"))[::5]


def _uri(path: Path) -> str:
    kind = "jpeg" if path.suffix == ".jpg" else "png"
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode()


def _scan(home: Path, folder: Path, model: str, tmp: Path) -> dict[str, float]:
    out = tmp / f"scan-{model}.json"
    done = cli("scan", str(folder), "-o", str(out), "--model", model, home=home)
    assert done.exit_code == 0, done.output
    return {Path(r["image_path"]).name: r["probability"] for r in json.loads(out.read_text())}


@pytest.mark.slow
def test_a_finished_run_registers_its_model_with_tags_and_an_alias(registered, monkeypatch):
    _, _, result, uri = registered
    # loading puts the model's code folder first on sys.path; later scans spawn from this one
    monkeypatch.setattr(sys, "path", list(sys.path))
    client = mlflow.MlflowClient(uri)
    version = client.get_model_version(NAME, "1")
    assert version.tags["threshold"] == repr(float(result.threshold))
    assert version.tags["nsfw_tui.model_id"] == result.model_id
    assert float(version.tags["val_auroc"]) == pytest.approx(result.metrics["val_auroc"], 1e-5)
    assert str(client.get_model_version_by_alias(NAME, "candidate").version) == "1"
    assert result.message.endswith(f"; registered in MLflow as models:/{NAME}/1")
    run = client.get_run(version.run_id)
    assert run.info.run_name == result.run_id and run.info.status == "FINISHED"
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1"))
    code = {p.relative_to(local / "code").as_posix() for p in (local / "code").rglob("*.py")}
    assert {"nsfw_tui/core/images.py", "nsfw_tui/pyfunc/scoring.py"} <= code
    assert not {c for c in code if "store" in c or c.startswith("nsfw_tui/cli")}
    assert [p.name for p in (local / "artifacts").glob("*.onnx")] == [f"{result.model_id}.onnx"]
    loaded = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    assert loaded.metadata.get_input_schema().input_types() == [mlflow.types.DataType.string]


LOADER = """
import json, sys
sys.modules["torch"] = None  # serving needs no torch: any import of it fails here
import mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
out = model.predict(json.loads(sys.argv[2]))
files = {n: m.__file__ for n, m in sys.modules.items() if n.split(".")[0] == "nsfw_tui"}
print(json.dumps({"out": out, "files": files}))
"""


@pytest.mark.slow
def test_the_pyfunc_scores_paths_and_data_uris_as_scan_does_from_its_own_code(registered):
    tmp, home, result, uri = registered
    images = _images(tmp)
    data = tmp / "data"
    inputs = [str(p.relative_to(data)) for p in images] + [_uri(p) for p in images]
    inputs += ["nsfw/missing.png", "../mlruns.db"]
    # a process without this checkout on its path: only the model's code folder has the app
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(QUIET, MLFLOW_TRACKING_URI=uri, NSFW_TUI_SERVE_ROOT=str(data))
    done = subprocess.run(
        [sys.executable, "-c", LOADER, f"models:/{NAME}/1", json.dumps(inputs)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.splitlines()[-1])
    files = got["files"]
    assert "nsfw_tui.core.images" in files and "nsfw_tui.pyfunc.scoring" in files
    for name, file in files.items():
        code = Path(file).parents[len(name.split(".")) - (file.endswith("__init__.py") is False)]
        assert code.name == "code" and (code.parent / "MLmodel").is_file(), (name, file)
    scanned = _scan(home, data, result.model_id, tmp)
    out = got["out"]
    n = len(images)
    for i, path in enumerate(images):
        want = scanned[path.name]
        for entry in (out[i], out[n + i]):
            assert abs(entry["probability"] - want) <= ATOL, (path, entry, want)
            assert entry["prediction"] == int(entry["probability"] >= result.threshold)
            assert entry["class"] == ("NSFW" if entry["prediction"] else "SFW")
    assert [o["class"] for o in out[-2:]] == ["error", "error"]
    assert out[-2]["error"].startswith("missing:") and out[-1]["error"].startswith("refused:")
    assert all(o["probability"] is None and o["prediction"] is None for o in out[-2:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read()


@pytest.mark.slow
def test_mlflow_models_serve_answers_the_original_request(registered):
    tmp, home, result, uri = registered
    data = tmp / "data"
    images = _images(tmp)[:3]
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(QUIET, MLFLOW_TRACKING_URI=uri, NSFW_TUI_SERVE_ROOT=str(data))
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow_cli), "models", "serve", "-m", f"models:/{NAME}/latest"]
    command += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    log = (tmp / "serve.log").open("wb")
    server = subprocess.Popen(
        command, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp / "serve.log").read_text()[-3000:]
            try:
                status, _ = _get(f"http://127.0.0.1:{port}/health", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        request = {"inputs": [str(p.relative_to(data)) for p in images] + [_uri(images[0])]}
        request["inputs"].append("nsfw/missing.jpg")
        status, body = _get(f"http://127.0.0.1:{port}/invocations", request)
        assert status == 200
        answer = json.loads(body)
        assert list(answer) == ["predictions"]
        preds = answer["predictions"]
        assert len(preds) == len(request["inputs"])
        scanned = _scan(home, data, result.model_id, tmp)
        for path, entry in zip([*images, images[0]], preds, strict=False):
            assert set(entry) == {"probability", "prediction", "class"}
            assert abs(entry["probability"] - scanned[path.name]) <= ATOL
            assert entry["class"] == {1: "NSFW", 0: "SFW"}[entry["prediction"]]
        assert preds[-1]["class"] == "error" and preds[-1]["probability"] is None
        assert preds[-1]["error"].startswith("missing:")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)
        log.close()


@pytest.mark.slow
def test_models_add_brings_a_registered_version_back(registered, tmp_path):
    tmp, home, result, uri = registered
    other = tmp_path / "colleague"
    done = cli("models", "add", f"models:/{NAME}/1", "--tracking-uri", uri, home=other)
    assert done.exit_code == 0, done.output
    with Store.open(other / "store.db") as store:
        row = store.model(f"{NAME}-v1")
    assert row is not None and row.kind == "onnx"
    assert row.threshold == pytest.approx(result.threshold)
    assert row.meta["added_from"].startswith(f"models:/{NAME}/1")
    assert Path(row.path).parent == other / "models"
    theirs = _scan(other, tmp / "data", row.id, tmp_path)
    ours = _scan(home, tmp / "data", result.model_id, tmp_path)
    assert theirs.keys() == ours.keys()
    assert max(abs(theirs[k] - ours[k]) for k in ours) <= ATOL
    again = cli("models", "add", f"models:/{NAME}/1", "--tracking-uri", uri, home=other)
    assert again.exit_code == 2 and "exists already" in again.output
    # an alias and "latest" resolve to the version they name now
    client = mlflow.MlflowClient(uri)
    newest = max(int(v.version) for v in client.search_model_versions(f"name = '{NAME}'"))
    candidate = client.get_model_version_by_alias(NAME, "candidate").version
    for ref, number, mid in (("@candidate", candidate, "by-alias"), ("/latest", newest, "newest")):
        got = cli(
            "models", "add", f"models:/{NAME}{ref}", "--id", mid, "--tracking-uri", uri, home=other
        )
        assert got.exit_code == 0, got.output
        with Store.open(other / "store.db") as store:
            assert store.model(mid).meta["added_from"] == f"models:/{NAME}/{number} at {uri}"


@pytest.mark.slow
def test_export_mlflow_registers_the_builtin_model_and_moves_the_alias(
    registered, tmp_path, monkeypatch
):
    tmp, home, _, uri = registered
    # as above: loading prepends its code folder, so a scan spawned after it would break
    monkeypatch.setattr(sys, "path", list(sys.path))
    images = _images(tmp)[:2]
    done = cli(
        "export",
        "--mlflow",
        "--model",
        "open_nsfw",
        f"logging.mlflow.tracking_uri={uri}",
        home=home,
    )
    assert done.exit_code == 0, done.output
    version = next(
        v
        for v in mlflow.MlflowClient(uri).search_model_versions(f"name = '{NAME}'")
        if v.tags.get("nsfw_tui.model_id") == "open_nsfw"
    )
    assert f"models:/{NAME}/{version.version}" in done.output
    moved = mlflow.MlflowClient(uri).get_model_version_by_alias(NAME, "candidate")
    assert str(moved.version) == str(version.version)
    scanned = _scan(home, tmp / "data", "open_nsfw", tmp_path)  # before loading: see above
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version.version}")
    out = model.predict([_uri(p) for p in images])
    for path, entry in zip(images, out, strict=True):
        assert abs(entry["probability"] - scanned[path.name]) <= ATOL


@pytest.mark.slow
def test_export_mlflow_checks_its_input_example_from_the_real_command(registered):
    """MLflow runs predict on the input example inside the exporting process: decode processes
    spawned there would re-run the `nsfw-tui` script (spawn imports the main script; `-m`
    would hide this) with the model's code folder first on sys.path (no CLI in it) and die,
    so that check decodes in the calling thread."""
    _, home, _, uri = registered
    env = {**os.environ, **QUIET, "MLFLOW_TRACKING_URI": uri}
    env.pop("NSFW_TUI_PYFUNC_DECODE_INLINE", None)
    args = ["export", "--mlflow", "--model", "open_nsfw", "--alias", "smoke"]
    args.append(f"logging.mlflow.tracking_uri={uri}")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("nsfw-tui")), *args, "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Got error" not in out and "decoder process did not start" not in out
    assert "NSFW_TUI_PYFUNC_DECODE_INLINE" not in os.environ
    moved = mlflow.MlflowClient(uri).get_model_version_by_alias(NAME, "smoke")
    assert moved.tags["nsfw_tui.model_id"] == "open_nsfw"


def test_the_inline_switch_has_one_name():
    from nsfw_tui.models import mlflow_registry
    from nsfw_tui.pyfunc import model

    assert mlflow_registry.INLINE_ENV == model.INLINE_ENV


def test_bad_registry_arguments_are_one_clear_line(tmp_path):
    home = tmp_path / "home"
    bad = cli("models", "add", "models:/only-a-name", home=home)
    assert bad.exit_code == 2
    assert error_lines(bad) == [
        "error: 'models:/only-a-name' is not a registered model URI: give "
        "models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS"
    ]
    version = cli("models", "add", "models:/name/first", home=home)
    assert error_lines(version) == [
        "error: the version in 'models:/name/first' must be a number or 'latest'"
    ]
    flags = cli("models", "add", "models:/name/1", "--link", "--mean", "1", "2", "3", home=home)
    assert error_lines(flags) == ["error: --mean, --link: only for an ONNX file, not models:/..."]
    uri_flag = cli("models", "add", str(tmp_path / "x.onnx"), "--tracking-uri", "x", home=home)
    assert error_lines(uri_flag) == [
        "error: --tracking-uri goes with a models:/NAME/VERSION argument"
    ]
    alias = cli("export", "--mlflow", "--alias", "v2", home=home)
    assert alias.exit_code == 2 and "cannot be an MLflow alias" in alias.output
    quantized = cli("export", "--mlflow", "--quantize", "--opset", "17", home=home)
    assert error_lines(quantized) == ["error: --opset, --quantize go with --onnx, not --mlflow"]
    both = cli("export", "--mlflow", "--onnx", home=home)
    assert error_lines(both) == [
        "error: choose one: nsfw-tui export --onnx, or nsfw-tui export --mlflow"
    ]


@pytest.mark.slow
def test_a_version_the_registry_lacks_is_one_clear_line_and_adds_nothing(tmp_path, monkeypatch):
    home = tmp_path / "home"
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    gone = cli("models", "add", "models:/nope/3", "--tracking-uri", uri, home=home)
    assert gone.exit_code == 2
    assert error_lines(gone) == [
        f"error: cannot read models:/nope/3 from {uri}: "
        "Model Version (name=nope, version=3) not found"
    ]
    with Store.open(home / "store.db") as store:
        assert [m.id for m in store.models()] == ["open_nsfw"]


def test_without_mlflow_the_commands_name_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    done = cli("export", "--mlflow", home=tmp_path / "home")
    assert done.exit_code == 2
    assert error_lines(done) == [
        "error: export --mlflow needs the mlflow extra (mlflow is not installed): "
        "pip install 'nsfw-tui[mlflow]'"
    ]


@pytest.mark.slow
def test_export_mlflow_takes_a_checkpoint_folder(registered):
    _, home, result, uri = registered
    done = cli(
        "export",
        "--mlflow",
        "--checkpoint",
        str(Path(result.checkpoint).parent),
        "--alias",
        "",
        f"logging.mlflow.tracking_uri={uri}",
        home=home,
    )
    assert done.exit_code == 0, done.output
    version = _version_of(uri, result.model_id)
    assert int(version.version) > 1 and version.tags["nsfw_tui.kind"] == "checkpoint"
    assert version.tags["threshold"] == repr(float(result.threshold))
    assert "alias" not in done.output and not version.aliases


def _version_of(uri: str, model_id: str):
    found = mlflow.MlflowClient(uri).search_model_versions(f"name = '{NAME}'")
    return max(
        (v for v in found if v.tags.get("nsfw_tui.model_id") == model_id),
        key=lambda v: int(v.version),
    )


@pytest.mark.slow
def test_export_mlflow_takes_an_adapted_head_and_an_added_onnx_file(
    registered, tmp_path, monkeypatch
):
    tmp, home, _, uri = registered
    monkeypatch.setattr(sys, "path", list(sys.path))  # see the first test
    _scan(home, tmp / "data", "open_nsfw", tmp_path)  # the built-in features the head needs
    with Store.open(home / "store.db") as store:
        adapted = A.adapt(store, home / "models", activate=False).model_id
    added = cli("models", "add", f"models:/{NAME}/1", "--tracking-uri", uri, home=home)
    assert added.exit_code == 0, added.output
    onnx_id = f"{NAME}-v1"
    assert cli("models", "threshold", onnx_id, "0.25", home=home).exit_code == 0
    fresh = tmp_path / "fresh"  # images no model has seen: the scan scores them live
    images = write_family(fresh, "stripes", 2, seed=77) + write_family(fresh, "blobs", 2, seed=78)
    expected = {}
    for model_id in (adapted, onnx_id):
        done = cli(
            "export",
            "--mlflow",
            "--model",
            model_id,
            f"logging.mlflow.tracking_uri={uri}",
            home=home,
        )
        assert done.exit_code == 0, done.output
        expected[model_id] = _scan(home, fresh, model_id, tmp_path)
    with Store.open(home / "store.db") as store:
        thresholds = {m: store.model(m).threshold for m in expected}
    for model_id, scanned in expected.items():  # loaded after every scan: see the first test
        version = _version_of(uri, model_id)
        assert version.tags["threshold"] == repr(float(thresholds[model_id]))
        assert version.tags["nsfw_tui.kind"] == ("adapted" if model_id == adapted else "onnx")
        model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version.version}")
        out = model.predict([_uri(p) for p in images])
        for path, entry in zip(images, out, strict=True):
            assert abs(entry["probability"] - scanned[path.name]) <= ATOL, (model_id, path)
            assert entry["prediction"] == int(entry["probability"] >= thresholds[model_id])


def test_a_bad_alias_stops_training_before_it_starts(tmp_path):
    from nsfw_tui.core.errors import NsfwTuiError

    store_path = labelled_store(tmp_path, 5, 5)
    cfg = config("logging.mlflow.enabled=true", "logging.mlflow.registered_model_alias=latest")
    with pytest.raises(NsfwTuiError, match=r"registered_model_alias: 'latest' cannot be an MLflow"):
        train(store_path, home_for(store_path), cfg)
    with Store.open(store_path) as store:
        assert store.runs() == [] and [m.id for m in store.models()] == []
