"""Ten hand-made labels and scores whose metrics the tests work out by hand, and a store of them."""

from __future__ import annotations

from pathlib import Path

from nsfw_tui.core.store import ScoreRecord, Store
from nsfw_tui.core.structure import CHECK_VERSION

Y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
S = [0.9, 0.8, 0.35, 0.1, 0.7, 0.3, 0.2, 0.15, 0.05, 0.0]


def scored_store(home: Path) -> Path:
    """home/store.db with S cached as open_nsfw's scores of ten gone files, labelled by Y."""
    with Store.open(home / "store.db") as store:
        records, labels = [], {"nsfw": [], "sfw": []}
        for i, (y, s) in enumerate(zip(Y, S, strict=True)):
            sha = f"{i:064x}"
            records.append(
                ScoreRecord(
                    f"/gone/{i}.jpg",
                    1,
                    1,
                    sha,
                    probability=s,
                    model_id="open_nsfw",
                    checked=CHECK_VERSION,
                )
            )
            labels["nsfw" if y else "sfw"].append(sha)
        store.record_files(records)
        store.set_labels(labels["nsfw"], "nsfw")
        store.set_labels(labels["sfw"], "sfw")
    return home
