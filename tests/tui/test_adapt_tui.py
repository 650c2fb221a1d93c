"""Adaptation in the review screen, driven by Pilot with the real built-in network."""

from __future__ import annotations

import pytest
from support.imagegen import family_image, save
from support.tui import labels_by_sha, settle, wait_for
from textual_image.widget import HalfcellImage

from nsfw_tui.core import adapt as A
from nsfw_tui.core.home import resolve_home
from nsfw_tui.core.scan import ScanOptions
from nsfw_tui.core.store import Store
from nsfw_tui.tui.app import make_app
from nsfw_tui.tui.settings import ReviewSettings
from nsfw_tui.tui.widgets.status_bar import StatusBar


def status(screen) -> str:
    return str(screen.query_one(StatusBar).content)


@pytest.mark.slow
async def test_label_adapt_and_the_list_resorts_in_place(tmp_path):
    from nsfw_tui.models.registry import load_scorer

    folder = tmp_path / "photos"
    # name order = labelling order: blobs and photos (SFW), dark ones (NSFW), then the rest
    for i in range(6):
        for prefix, family in (("a", "blob"), ("b", "photo"), ("c", "dark")):
            save(family_image(family, i), folder / f"{prefix}_{family}_{i:02d}.png")
    for i in range(6, 12):
        for family in ("blob", "dark", "photo"):
            save(family_image(family, i), folder / f"d_{family}_{i:02d}.png")
    settings = ReviewSettings(
        scan_options=ScanOptions(workers=0), scorer_factory=load_scorer, image_class=HalfcellImage
    )
    app = make_app(folder, home=resolve_home(tmp_path / "home"), settings=settings)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await settle(pilot, timeout=60)
        assert screen.review.model_id == "open_nsfw"

        # every 4 labels, automatically: too few yet, and the bar says how many more
        screen.adaptation.use(A.Settings(auto_every=4))
        await pilot.press("s", "s", "s", "s")
        await wait_for(pilot, lambda: "labels needed" in status(screen))
        assert "5 more NSFW and 1 more SFW labels needed" in status(screen)

        screen.adaptation.use(A.Settings(auto_every=0))  # from here on only A adapts
        await pilot.press(*"ssssssssnnnnnn")
        await wait_for(pilot, lambda: len(labels_by_sha(app.home)) == 18)
        await pilot.press("o")  # sort: highest probability first
        review = screen.review
        before = [r.name for r in review.view]
        assert any("blob" in name for name in before[:12]), "the built-in ranks blobs high"
        calls = {r.path: review.call(r) for r in review.rows}

        await pilot.press("A")
        await wait_for(pilot, lambda: "adapted (active)" in status(screen), timeout=30)
        await settle(pilot)

        with Store.open(app.home.store_path, check=False) as store:
            active = store.active_model()
            cached = store.predictions(active.id)
        assert active.kind == "adapted" and review.model_id == active.id
        assert screen.model_name == active.id and review.threshold == active.threshold
        # updated in place: every row holds the adapted score, the view re-sorted by it
        assert all(r.probability == cached[r.sha256] for r in review.rows)
        after = [r.name for r in review.view]
        assert all("dark" in name for name in after[:12]), after[:12]
        assert review.sort == "probability" and after != before
        flips = sum(1 for r in review.rows if calls[r.path] != review.call(r))
        assert flips > 0
        text = status(screen)
        assert f"{flips} calls flipped" in text and "AUROC 1.000" in text
        assert "vs built-in" in text
