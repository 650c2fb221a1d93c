"""The REST face: health, paths under the root, uploads, base64, labels (R11), refusals, token,
CLI."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from support.imagegen import photo, save, truncated_jpeg
from support.serve import FakeScorer, b64, jpeg_bytes, live_server
from typer.testing import CliRunner

from nsfw_tui.core.errors import NsfwTuiError
from nsfw_tui.core.store import Store
from nsfw_tui.serve import check_binding, create_app, require_extras, run, store_labels


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    root = base / "library"
    for i in range(3):
        save(photo((96, 72), i), root / f"img_{i}.jpg", quality=85)
    (root / "sub").mkdir()
    save(photo((64, 64), 7), root / "sub" / "deep.png")
    (root / "broken.jpg").write_bytes(b"not an image at all")
    truncated_jpeg(root / "cut.jpg", 0.3)
    (root / "empty.jpg").write_bytes(b"")
    store_path = base / "home" / "store.db"
    Store.open(store_path).close()
    return root, store_path


@pytest.fixture(scope="module")
def served(library):
    """The production shape: real decode processes, labels from a store, a fake model."""
    root, store_path = library
    scorer = FakeScorer()
    app = create_app(scorer, threshold=0.5, root=root, labels=store_labels(store_path))
    with live_server(app) as live:
        live.scorer = scorer
        yield live


@pytest.fixture(scope="module")
def client(served):
    with httpx.Client(base_url=served.url, timeout=30) as c:
        yield c


def test_health_answers_with_the_model_id(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": "fake-redness", "threshold": 0.5}


def test_paths_under_the_root_are_scored_in_request_order(client, library):
    root, _ = library
    r = client.post("/invocations", json={"inputs": ["img_0.jpg", "sub/deep.png", "gone.jpg"]})
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert [p["class"] for p in preds[:2]] == [
        "NSFW" if p["probability"] >= 0.5 else "SFW" for p in preds[:2]
    ]
    assert all(0 <= p["probability"] <= 1 and p["prediction"] in (0, 1) for p in preds[:2])
    assert preds[2] == {
        "probability": None,
        "prediction": None,
        "class": "error",
        "error": "missing: file not found",
    }
    # the original curl example sends absolute paths: one under the root is accepted
    again = client.post("/invocations", json={"inputs": [str(root / "img_0.jpg")]})
    assert again.json()["predictions"][0] == preds[0]


def test_unreadable_files_are_errors_never_sfw(client):
    r = client.post("/invocations", json={"inputs": ["broken.jpg", "cut.jpg", "empty.jpg", "sub"]})
    assert r.status_code == 422  # nothing could be scored; each item still says why
    preds = r.json()["predictions"]
    kinds = [p["error"].split(":")[0] for p in preds]
    assert kinds == ["unidentified", "truncated", "empty", "unreadable"]
    assert all(p["prediction"] is None and p["class"] == "error" for p in preds)


def test_uploads_and_base64_score_like_the_file(client, library):
    root, _ = library
    data = (root / "img_1.jpg").read_bytes()
    by_path = client.post("/invocations", json={"inputs": ["img_1.jpg"]}).json()["predictions"]
    by_b64 = client.post("/invocations", json={"images": [b64(data)]}).json()["predictions"]
    files = [("files", ("a.jpg", data, "image/jpeg")), ("files", ("b.bin", b"junk"))]
    up = client.post("/invocations", files=files)
    assert up.status_code == 200
    assert by_b64 == by_path
    assert up.json()["predictions"][0] == by_path[0]
    assert up.json()["predictions"][1]["class"] == "error"
    both = client.post("/invocations", json={"inputs": ["img_1.jpg"], "images": [b64(b"x")]})
    assert [p["class"] for p in both.json()["predictions"]][1] == "error"


def test_a_persons_label_outranks_the_model(client, library):
    root, store_path = library
    sha = hashlib.sha256((root / "img_2.jpg").read_bytes()).hexdigest()
    model = client.post("/invocations", json={"inputs": ["img_2.jpg"]}).json()["predictions"][0]
    flipped = "sfw" if model["prediction"] == 1 else "nsfw"
    with Store.open(store_path) as store:
        store.set_labels([sha], flipped)
    try:
        item = client.post("/invocations", json={"inputs": ["img_2.jpg"]}).json()["predictions"]
        assert item[0]["label"] == flipped
        assert item[0]["prediction"] == (1 if flipped == "nsfw" else 0)
        assert item[0]["probability"] == model["probability"]  # the model's view is kept
    finally:
        with Store.open(store_path) as store:
            store.set_labels([sha], None)


def test_r11_without_labels_the_answer_is_the_models_alone(library):
    root, store_path = library
    data = (root / "img_0.jpg").read_bytes()
    body = {"inputs": ["img_0.jpg"], "images": [b64(data)]}
    plain = create_app(FakeScorer(), threshold=0.5, root=root, decode_workers=0)
    with live_server(plain) as live:
        model = httpx.post(live.url + "/invocations", json=body).json()["predictions"]
    flipped = "sfw" if model[0]["prediction"] == 1 else "nsfw"
    with Store.open(store_path) as store:
        store.set_labels([hashlib.sha256(data).hexdigest()], flipped)
    labelled = create_app(
        FakeScorer(), threshold=0.5, root=root, decode_workers=0, labels=store_labels(store_path)
    )
    try:
        with live_server(plain) as live:
            without = httpx.post(live.url + "/invocations", json=body).json()["predictions"]
        with live_server(labelled) as live:
            with_labels = httpx.post(live.url + "/invocations", json=body).json()["predictions"]
    finally:
        with Store.open(store_path) as store:
            store.set_labels([hashlib.sha256(data).hexdigest()], None)
    assert without == model and all("label" not in p for p in without)
    assert [p["label"] for p in with_labels] == [flipped, flipped]
    assert [p["prediction"] for p in with_labels] == [1 - model[0]["prediction"]] * 2


def test_r11_cli_serve_reads_labels_only_with_the_flag(tmp_path, monkeypatch):
    import nsfw_tui.models.registry as registry
    import nsfw_tui.serve as serving
    from nsfw_tui.cli import app

    served: list[dict] = []
    monkeypatch.setattr(registry, "load_scorer", lambda row, **kwargs: FakeScorer())
    monkeypatch.setattr(serving, "run", lambda host, port, **kwargs: served.append(kwargs))
    runner = CliRunner()
    assert "--labels" in runner.invoke(app, ["serve", "--help"]).output
    for args in ([], ["--labels"]):
        r = runner.invoke(app, ["serve", "--home", str(tmp_path), *args])
        assert r.exit_code == 0, r.output
    assert served[0]["labels"] is None
    assert served[1]["labels"](["0" * 64]) == {}  # reads the home's store


@pytest.mark.parametrize(
    ("kwargs", "status", "says"),
    [
        ({"content": b"{bad json", "headers": {"content-type": "application/json"}}, 400, "JSON"),
        ({"content": b"\xff\xfe\x00", "headers": {"content-type": "application/json"}}, 400, ""),
        ({"json": ["a.jpg"]}, 400, "object"),
        ({"json": {}}, 400, "inputs"),
        ({"json": {"inputs": "img_0.jpg"}}, 400, "list"),
        ({"json": {"inputs": ["img_0.jpg"], "extra": 1}}, 400, "unknown"),
        ({"json": {"inputs": [3]}}, 400, "string"),
        ({"json": {"inputs": [""]}}, 400, "non-empty"),
        ({"json": {"images": ["!!notbase64!!"]}}, 400, "base64"),
        ({"json": {"inputs": ["img_0.jpg"] * 65}}, 400, "limit is 64"),
        ({"content": b"a.jpg", "headers": {"content-type": "text/plain"}}, 415, "application/"),
        ({"data": {"inputs": "img_0.jpg"}, "files": [("f", ("a", b"x"))]}, 400, "not a file"),
        ({"content": b"--x--\r\n", "headers": {"content-type": "multipart/form-data"}}, 400, ""),
    ],
)
def test_malformed_requests_get_a_clear_4xx(client, kwargs, status, says):
    r = client.post("/invocations", **kwargs)
    assert r.status_code == status, r.text
    assert says in r.json()["detail"]


def test_without_a_root_paths_are_refused_and_bytes_still_work():
    app = create_app(FakeScorer(), threshold=0.5, root=None, decode_workers=0)
    with live_server(app) as live, httpx.Client(base_url=live.url) as c:
        r = c.post("/invocations", json={"inputs": ["img_0.jpg"]})
        assert r.status_code == 403 and "--root" in r.json()["detail"]
        ok = c.post("/invocations", json={"images": [b64(jpeg_bytes())]})
        assert ok.status_code == 200 and ok.json()["predictions"][0]["probability"] is not None


def test_health_answers_while_a_scoring_call_is_held():
    hold = threading.Event()
    scorer = FakeScorer(hold=hold)
    app = create_app(scorer, threshold=0.5, decode_workers=0)
    with (
        live_server(app) as live,
        httpx.Client(base_url=live.url, timeout=30) as c,
        ThreadPoolExecutor(1) as pool,
    ):
        pending = pool.submit(c.post, "/invocations", json={"images": [b64(jpeg_bytes())]})
        assert scorer.entered.wait(10)
        started = time.perf_counter()
        health = c.get("/health", timeout=2)
        elapsed = time.perf_counter() - started
        hold.set()
        assert pending.result(30).status_code == 200
    assert health.status_code == 200 and elapsed < 1.0


def test_overload_is_answered_with_503_not_a_hang():
    hold = threading.Event()
    scorer = FakeScorer(hold=hold)
    app = create_app(scorer, threshold=0.5, decode_workers=0, queue_timeout_s=0.3)
    body = {"images": [b64(jpeg_bytes())]}
    with live_server(app) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(c.post, "/invocations", json=body)
            assert scorer.entered.wait(10)
            second = c.post("/invocations", json=body)
            hold.set()
            assert first.result(30).status_code == 200
        assert second.status_code == 503 and second.headers["retry-after"] == "1"
        assert c.post("/invocations", json=body).status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com"])
def test_run_refuses_other_addresses_without_a_token(host, monkeypatch):
    import nsfw_tui.serve.server as serving

    def never(*args, **kwargs):
        raise AssertionError("no server may be built")

    monkeypatch.setattr(serving, "create_app", never)
    with pytest.raises(NsfwTuiError, match="without a token"):
        run(host, 5000, scorer=FakeScorer(), threshold=0.5)


def test_run_names_a_busy_port_in_one_line(monkeypatch):
    import nsfw_tui.serve.server as serving

    monkeypatch.setattr(serving, "create_app", lambda *a, **k: pytest.fail("nothing is built"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(NsfwTuiError, match=f"cannot listen on 127.0.0.1:{port}"):
            run("127.0.0.1", port, scorer=FakeScorer(), threshold=0.5)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host):
    check_binding(host, None)


def test_every_request_needs_the_token_when_one_is_set():
    app = create_app(FakeScorer(), threshold=0.5, token="s3cret", decode_workers=0)
    with live_server(app) as live, httpx.Client(base_url=live.url) as c:
        for path in ("/health", "/openapi.json"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = c.get("/health", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200
        no = c.post("/invocations", json={"images": [b64(jpeg_bytes())]})
        assert no.status_code == 401 and no.headers["www-authenticate"] == "Bearer"


def test_cli_serve_refuses_a_public_address_without_a_token(tmp_path):
    from nsfw_tui.cli import app

    runner = CliRunner()
    assert "--root" in runner.invoke(app, ["serve", "--help"]).output
    r = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--home", str(tmp_path)])
    assert r.exit_code == 2 and "without a token" in r.output
    r = runner.invoke(app, ["serve", "--root", str(tmp_path / "nope"), "--home", str(tmp_path)])
    assert r.exit_code == 2 and "--root must be an existing folder" in r.output


def test_missing_extra_is_one_line_with_the_pip_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name)
    )
    with pytest.raises(NsfwTuiError, match=r"pip install 'nsfw-tui\[serve\]'"):
        require_extras()
