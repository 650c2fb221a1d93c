"""`nsfw-tui demo` in a home of its own: labelling and auto-adapting there leave yours alone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from support.tui import labels_by_sha, record_notes, settle, wait_for
from textual_image.widget import HalfcellImage
from typer.testing import CliRunner

from nsfw_tui.cli import app as cli_app
from nsfw_tui.core.home import Home, resolve_home
from nsfw_tui.core.scan import ScanOptions
from nsfw_tui.core.scorers import BUILTIN_ID, ensure_builtin
from nsfw_tui.core.store import Store
from nsfw_tui.tui import app as tui_app
from nsfw_tui.tui.widgets.status_bar import StatusBar

MINE = "mine"  # the person's own active model in the main home: not the built-in one
REAL_MAKE_APP = tui_app.make_app


def main_home(root: Path) -> Home:
    """A person's home with a label and an active model of their own."""
    home = resolve_home(root)
    with Store.open(home.store_path) as store:
        ensure_builtin(store)
        store.add_model(MINE, "onnx", threshold=0.3, path="/models/mine.onnx", activate=True)
        store.set_labels(["ab" * 32], "nsfw")
    (home.models_dir / "mine.onnx").write_bytes(b"not read by this test")
    return home


def state(home: Home) -> tuple:
    """Everything the demo must not change: models, the active one, labels, model files."""
    with Store.open(home.store_path, check=False) as store:
        models = [(m.id, m.kind, m.threshold, m.active, m.path) for m in store.models()]
        labels = {
            sha: [ev.label for ev in store.label_history(sha)] for sha in store.current_labels()
        }
        active = store.active_model().id
    return models, active, labels, sorted(p.name for p in home.models_dir.iterdir())


def demo_app(monkeypatch, home: Home) -> tui_app.NsfwTuiApp:
    """The app `nsfw-tui demo --home HOME` builds, caught before it takes the terminal.

    Only the test's scanning (inline decoding) and renderer differ; the home, the folder and
    the real built-in scorer are the command's own. Notifications are kept in ``app.notes``.
    """
    built: list[tui_app.NsfwTuiApp] = []

    def make_app(root, *, home, settings):
        ours = replace(settings, scan_options=ScanOptions(workers=0), image_class=HalfcellImage)
        app = REAL_MAKE_APP(root, home=home, settings=ours)
        app.run = lambda *a, **k: built.append(app)
        return app

    monkeypatch.setattr(tui_app, "make_app", make_app)
    result = CliRunner().invoke(cli_app, ["demo", "--home", str(home.root)])
    assert result.exit_code == 0, result.output
    (app,) = built
    return record_notes(app)


def status(screen) -> str:
    return str(screen.query_one(StatusBar).content)


@pytest.mark.slow
async def test_labelling_in_the_demo_leaves_the_main_home_unchanged(tmp_path, monkeypatch):
    main = main_home(tmp_path / "home")
    before = state(main)
    app = demo_app(monkeypatch, main)
    assert app.home.root == main.demo_dir and app.home.store_path != main.store_path
    assert app.root.is_relative_to(app.home.root)

    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settle(pilot, timeout=90)
        assert screen.model_name == BUILTIN_ID  # the demo's own store: the built-in model
        assert "fitted on" not in status(screen)
        # City scenes called NSFW: a split the built-in network does not make, a head does.
        # 20 labels = adapt.auto_every in configs/config_adapt.yaml: one automatic adaptation.
        keys = ["n" if row.folder == "city" else "s" for row in screen.review.view[:20]]
        await pilot.press(*keys)
        await wait_for(pilot, lambda: "adapted (" in status(screen), timeout=60)
        await settle(pilot)
        text = status(screen)

    demo_labels = labels_by_sha(app.home)
    assert len(demo_labels) == 20 and sorted(set(demo_labels.values())) == ["nsfw", "sfw"]
    with Store.open(app.home.store_path, check=False) as store:
        active = store.active_model()
    assert active.kind == "adapted", text  # the head beat the built-in model in the demo
    n = sum(active.meta["labels"].values())
    assert f"model {active.id} (fitted on {n} labels)" in text and "adapted (active)" in text
    notices = [m for _, title, m in app.notes if title == "Active model"]
    assert any(
        m.startswith(f"active model: {BUILTIN_ID} -> {active.id}, fitted on") for m in notices
    ), app.notes
    assert (main.demo_dir / "models" / f"{active.id}.npz").is_file()

    assert state(main) == before  # labels, models, the active one, model files: untouched
    assert not (main.models_dir / f"{active.id}.npz").exists()


def test_demo_reopens_its_own_home(tmp_path, monkeypatch):
    main = main_home(tmp_path / "home")
    first = demo_app(monkeypatch, main)
    again = demo_app(monkeypatch, main)
    assert first.home == again.home and first.root == again.root  # the samples are kept
    with Store.open(first.home.store_path, check=False) as store:
        assert store.active_model().id == BUILTIN_ID  # found offline, in the package
    assert not any(first.root.rglob("store.db"))  # the store is not among the samples
    assert state(main)[1] == MINE
