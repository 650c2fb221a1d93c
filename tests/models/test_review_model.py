"""`nsfw-tui PATH --model ID`: one review with another model, the active one left as it is."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from support.tui import FAKE_ID, RedScorer, make_test_app, scene_folder, settle
from typer.testing import CliRunner

from nsfw_tui.cli import app as cli_app
from nsfw_tui.core.store import Store
from nsfw_tui.tui.widgets.status_bar import StatusBar

OTHER = "other"


async def test_review_with_model_scores_with_it_and_keeps_the_active_one(tmp_path):
    expected = scene_folder(tmp_path / "photos")
    app = make_test_app(tmp_path, tmp_path / "photos", scorers=[RedScorer(OTHER, inverse=True)])
    app.settings = replace(app.settings, model_id=OTHER)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settle(pilot)
        assert screen.model_name == OTHER
        assert f"model {OTHER}  threshold" in str(screen.query_one(StatusBar).render())
        assert screen.review is not None
        scores = {Path(r.path).name: r.probability for r in screen.review.rows}
        assert scores == pytest.approx({name: 1 - p for name, p in expected.items()})
    assert app.scorers[OTHER].calls and not app.scorers[FAKE_ID].calls
    with Store.open(tmp_path / "home" / "store.db") as store:
        assert store.active_model().id == FAKE_ID


class _Started(Exception):
    """Raised in place of the screen's run: the test has what it came for."""


@pytest.mark.parametrize("first", [["open"], []], ids=["open", "bare path"])
def test_open_passes_the_model_to_the_screen(tmp_path, monkeypatch, first):
    scene_folder(tmp_path / "photos")
    home = tmp_path / "home"
    seen = {}

    def fake_make_app(folder, *, home, settings):
        seen["settings"] = settings
        raise _Started

    monkeypatch.setattr("nsfw_tui.tui.app.make_app", fake_make_app)
    args = [*first, str(tmp_path / "photos"), "--model", "open_nsfw", "--home", str(home)]
    with pytest.raises(_Started):
        CliRunner().invoke(cli_app, args, catch_exceptions=False)
    assert seen["settings"].model_id == "open_nsfw"


def test_open_with_an_unknown_model_is_one_line(tmp_path):
    scene_folder(tmp_path / "photos")
    args = ["open", str(tmp_path / "photos"), "--model", "nope", "--home", str(tmp_path / "h")]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 2
    assert result.output.strip() == "error: no model with id 'nope' (known: open_nsfw)"
