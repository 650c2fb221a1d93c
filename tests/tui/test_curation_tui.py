"""The review screen's duplicates filter, `useful` sort and `suspect` filter, driven by Pilot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.curation import USEFUL_ORDER, constructed_folder
from support.imagegen import family_image, save, scene, variants
from support.tui import (
    FAKE_ID,
    labels_by_name,
    labels_by_sha,
    make_test_app,
    row_text,
    settle,
    sha_of,
    wait_for,
)

from nsfw_tui.core import adapt as A
from nsfw_tui.core.config import load_config
from nsfw_tui.core.review import FILTERS, SORTS
from nsfw_tui.core.scan import ScanOptions, scan_folder
from nsfw_tui.core.scorers import load_builtin
from nsfw_tui.core.store import Store

SIZE = (120, 40)


def names(rows) -> list[str]:
    return [r.name for r in rows]


async def choose(pilot, key: str, count: int) -> None:
    await pilot.press(*[key] * count)


async def test_duplicates_filter_shows_one_row_per_group_and_labels_it_whole(tmp_path):
    folder = tmp_path / "photos"
    for seed in (10, 11):
        base = scene(seed)
        save(base, folder / f"s{seed}.png")
        for kind in ("resize", "jpeg40"):  # no features here: the perceptual hash groups them
            save(variants(base)[kind], folder / f"s{seed}_{kind}.png")
    shutil.copy(folder / "s10.png", folder / "s10_copy.png")
    save(scene(12), folder / "alone.png")
    app = make_test_app(tmp_path, folder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await choose(pilot, "f", FILTERS.index("duplicates"))
        assert screen.review.filter == "duplicates"
        assert names(screen.images.rows) == ["s10.png", "s11.png"]
        assert row_text(screen, 0).startswith("[4] s10.png")
        assert row_text(screen, 1).startswith("[3] s11.png")
        await pilot.press("n")  # the whole group of s10, as one change
        group = ["s10.png", "s10_copy.png", "s10_resize.png", "s10_jpeg40.png"]
        shas = {sha_of(folder / name) for name in group}  # the copy shares s10's hash
        await wait_for(pilot, lambda: set(labels_by_sha(app.home)) == shas)
        assert set(labels_by_sha(app.home).values()) == {"nsfw"}
        assert {r.name for r in screen.review.rows if r.label == "nsfw"} == set(group)
        assert screen.images.current.name == "s11.png"
        await pilot.press("z")  # one undo takes the whole group back
        await wait_for(pilot, lambda: labels_by_sha(app.home) == {})
        assert all(r.label is None for r in screen.review.rows)


async def test_useful_sort_follows_the_constructed_order_and_moves_after_a_label(tmp_path):
    app = make_test_app(tmp_path, tmp_path / "photos")
    constructed_folder(tmp_path / "photos", app.home)
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        assert app.scorers[FAKE_ID].calls == 0, "everything came from the cache"
        await choose(pilot, "o", SORTS.index("useful"))
        assert screen.review.sort == "useful"
        assert names(screen.images.rows) == USEFUL_ORDER
        assert "sort useful" in "".join(str(screen.query_one("#status").render()))
        await pilot.press("home", "n")  # best labelled: its twin now looks like a labelled one
        await wait_for(pilot, lambda: names(screen.images.rows)[0] == "near.png")
        await settle(pilot)
        assert names(screen.images.rows)[:3] == ["near.png", "twin.png", "far.png"]
        assert names(screen.images.rows)[-2:] == ["best.png", "labelled.png"]


FAMILY_LABEL = {"blob": "sfw", "dark": "nsfw", "photo": "sfw"}
PLANTED = {"dark_3.png": "sfw", "blob_5.png": "nsfw", "photo_7.png": "nsfw"}


@pytest.mark.slow
async def test_suspect_filter_lists_planted_wrong_labels_first_and_a_fix_clears_one(tmp_path):
    folder = tmp_path / "photos"
    for family in FAMILY_LABEL:
        for i in range(14):
            save(family_image(family, i), folder / f"{family}_{i}.png")
    app = make_test_app(tmp_path, folder)
    with Store.open(app.home.store_path) as store:  # features, labels and a head, as in use
        items = scan_folder(folder, load_builtin(), store, ScanOptions(workers=0)).items
        for value in ("nsfw", "sfw"):
            chosen = []
            for item in items:
                name = Path(item.path).name
                if PLANTED.get(name, FAMILY_LABEL[name.split("_")[0]]) == value:
                    chosen.append(item.sha256)
            store.set_labels(chosen, value)
        A.adapt(store, app.home.models_dir, A.Settings.from_config(load_config("adapt")))
        store.set_active(FAKE_ID)  # reviewed with another model: the head's scores still count
    async with app.run_test(size=SIZE) as pilot:
        screen = await settle(pilot)
        await choose(pilot, "f", FILTERS.index("suspect"))
        assert screen.review.filter == "suspect"
        shown = names(screen.images.rows)
        assert set(shown[:3]) == set(PLANTED) and len(shown) <= 6
        first = shown[0]
        right = FAMILY_LABEL[first.split("_")[0]]
        await pilot.press(right[0])  # n or s: the person fixes the label
        await wait_for(pilot, lambda: first not in names(screen.images.rows))
        assert labels_by_name(app.home)[first] == right
