"""A review folder whose `useful` order is known by construction, and planted wrong labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nsfw_tui.core.home import Home
from nsfw_tui.core.images import hash_file
from nsfw_tui.core.scorers import BUILTIN_ID
from nsfw_tui.core.store import ScoreRecord, Store
from nsfw_tui.core.structure import CHECK_VERSION
from support.tui import FAKE_ID, prefill, solid

# name -> (the active fake model's P, the built-in model's P, feature axis, label).
# At the fake model's threshold 0.5 and the built-in's 0.2:
#   best       on the threshold, the built-in disagrees, unlike the labelled: 1 + 1 + 1 = 3
#   twin       best's near copy (the same features): 0.71 + 1 + 1 = 2.71
#   near       just over the threshold, both agree, unlike the labelled: 0.93 + 0 + 1 = 1.93
#   far        sure (0.99), both agree, unlike the labelled: 0.18 + 0 + 1 = 1.18
#   like       on the threshold, both agree, the labelled image's features: 1 + 0 + 0 = 1
#   labelled   labelled SFW: after every unlabelled image
# Ranked: best 3, twin 2.71, near 1.93, far 1.18, like 1; twin may not follow its group's
# best, so the order is best, near, twin, far, like, labelled.
CONSTRUCTED = {
    "best.png": (0.5, 0.05, 0, None),
    "twin.png": (0.6, 0.05, 0, None),
    "near.png": (0.52, 0.9, 1, None),
    "far.png": (0.99, 0.99, 2, None),
    "like.png": (0.5, 0.6, 3, None),
    "labelled.png": (0.1, 0.05, 3, "sfw"),
}
USEFUL_ORDER = ["best.png", "near.png", "twin.png", "far.png", "like.png", "labelled.png"]


def constructed_folder(folder: Path, home: Home) -> dict[str, Path]:
    """CONSTRUCTED's images, their cached predictions and features, and the one label."""
    paths = {name: solid(folder / name, 20 + 30 * i) for i, name in enumerate(CONSTRUCTED)}
    prefill(home, paths.values(), lambda p: CONSTRUCTED[p.name][0])
    records, labelled = [], []
    for name, path in paths.items():
        _, builtin_p, axis, label = CONSTRUCTED[name]
        vector = np.zeros((1, 1024), dtype=np.float32)
        vector[0, axis] = 1.0
        st = path.stat()
        sha = hash_file(str(path))[0]
        records.append(
            ScoreRecord(
                str(path),
                st.st_size,
                st.st_mtime_ns,
                sha,
                probability=builtin_p,
                model_id=BUILTIN_ID,
                features=vector,
                checked=CHECK_VERSION,
            )
        )
        if label:
            labelled.append(sha)
    with Store.open(home.store_path) as store:
        store.record_files(records)
        store.set_labels(labelled, "sfw")
        assert store.active_model().id == FAKE_ID
    return paths
