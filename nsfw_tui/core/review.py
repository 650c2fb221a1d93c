"""The review session's state: rows, filters, sorts, folder view, counts and stats; no UI."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .curation import Curation, spread, suspects, usefulness
from .decision import model_call
from .metrics import Confusion, auroc, confusion
from .scan import CONTENT_ERRORS, ScanItem
from .store import Store, path_text
from .walk import WalkIssue, walk_images

FILTERS = (
    "all",
    "unlabelled",
    "disagreements",
    "predicted NSFW",
    "uncertain",
    "errors",
    "duplicates",  # one row per group of copies; a label goes to every member
    "suspect",  # labels the adapted head's out-of-fold scores contradict, most suspect first
)
SORTS = ("name", "probability", "uncertainty", "useful")
# A score this close to the threshold is "uncertain": the calls a person should check first.
UNCERTAIN_BAND = 0.1


@dataclass
class Row:
    path: str
    rel: str  # display text, relative to the root
    folder: str  # relative folder of the file, "" for the root itself
    size: int = 0
    mtime_ns: int = 0
    sha256: str | None = None
    probability: float | None = None
    error: str | None = None
    label: str | None = None

    @property
    def name(self) -> str:
        return os.path.basename(self.rel)

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        return "scored" if self.probability is not None else "pending"


@dataclass
class Stats:
    confusion: Confusion
    auroc: float | None
    labelled: int
    scored_labelled: int


@dataclass
class Review:
    root: Path
    rows: list[Row]
    threshold: float
    model_id: str
    folder: str | None = None  # None shows everything under the root
    filter: str = "all"
    sort: str = "name"
    search: str = ""
    view: list[Row] = field(default_factory=list)
    curation: Curation | None = None  # groups, features, other models, out-of-fold scores

    def __post_init__(self) -> None:
        self.by_path = {r.path: r for r in self.rows}
        self.group_sizes: dict[object, int] = {}
        self.keys: dict[str, object] = {}  # path -> group key, under the duplicates filter
        self.suspicion: dict[str, float] = {}
        self.refresh_view()

    # -- the model's call --------------------------------------------------------------

    def call(self, row: Row) -> str | None:
        if row.probability is None:
            return None
        return model_call(row.probability, self.threshold).value

    def disagrees(self, row: Row) -> bool:
        call = self.call(row)
        return row.label is not None and call is not None and call != row.label

    def uncertain(self, row: Row) -> bool:
        return (
            row.probability is not None and abs(row.probability - self.threshold) < UNCERTAIN_BAND
        )

    # -- the view ----------------------------------------------------------------------

    def _keep(self, row: Row) -> bool:
        if self.folder and not (
            row.folder == self.folder or row.folder.startswith(self.folder + "/")
        ):
            return False
        if self.search and self.search.lower() not in row.name.lower():
            return False
        f = self.filter
        if f == "unlabelled":
            return row.label is None
        if f == "disagreements":
            return self.disagrees(row)
        if f == "predicted NSFW":
            return self.call(row) == "nsfw"
        if f == "uncertain":
            return self.uncertain(row)
        if f == "errors":
            return row.error is not None
        if f == "duplicates":
            return self.group_sizes.get(self.keys[row.path], 0) > 1
        if f == "suspect":
            return row.sha256 in self.suspicion
        return True

    def _sort_key(self, row: Row):
        if self.sort == "probability":
            # Highest first; unscored and errors after every score.
            return (row.probability is None, -(row.probability or 0.0), row.rel)
        if self.sort == "uncertainty":
            p = row.probability
            return (p is None, abs(p - self.threshold) if p is not None else 0.0, row.rel)
        return (row.rel,)

    def refresh_view(self) -> list[Row]:
        self._refresh_curation()
        rows = [r for r in self.rows if self._keep(r)]
        if self.filter == "suspect":
            rows.sort(key=lambda r: (-self.suspicion[r.sha256], r.rel))
        elif self.sort == "useful":
            rows = self._useful(rows)
        else:
            rows.sort(key=self._sort_key)
        if self.filter == "duplicates":  # the first of each group in this order stands for it
            seen: set[object] = set()
            rows = [
                r for r in rows if not (self.keys[r.path] in seen or seen.add(self.keys[r.path]))
            ]
        self.view = rows
        return self.view

    # -- groups, usefulness, suspects ----------------------------------------------------

    def group_key(self, row: Row) -> object:
        """The row's near-duplicate group; exact copies share one without any curation."""
        if row.sha256 is None or row.error:
            return ("file", row.path)
        g = self.curation.group_of(row.sha256) if self.curation is not None else None
        return ("sha", row.sha256) if g is None else ("group", g)

    def members(self, row: Row) -> list[Row]:
        """Every row of ``row``'s group (the whole review, not only this view)."""
        return self.members_of([row])

    def members_of(self, rows: list[Row]) -> list[Row]:
        """Every row of the groups of ``rows``, in one pass over the review (a label given to
        a whole view of groups must not walk the review once per group)."""
        wanted = {self.group_key(r) for r in rows}
        return [r for r in self.rows if self.group_key(r) in wanted]

    def caption(self, row: Row) -> str:
        """The list's text for a row: under the duplicates filter, with its group's size."""
        if self.filter == "duplicates":
            # the size first: a long name is cut at the end, never the count
            return f"[{self.group_sizes.get(self.keys.get(row.path), 1)}] {row.rel}"
        return row.rel

    def _refresh_curation(self) -> None:
        if self.filter == "duplicates":
            self.keys = {r.path: self.group_key(r) for r in self.rows}
            sizes: dict[object, int] = {}
            for key in self.keys.values():
                sizes[key] = sizes.get(key, 0) + 1
            self.group_sizes = sizes
        if self.filter == "suspect":
            labels = {r.sha256: r.label for r in self.rows if r.sha256 and r.label}
            oof = self.curation.oof if self.curation is not None else {}
            self.suspicion = suspects(labels, oof)

    def usefulness(self, row: Row) -> float | None:
        """None for a labelled or unscored image: `useful` puts those after the rest."""
        if row.label is not None or row.probability is None:
            return None
        return float(usefulness([row.probability], self.threshold, [row.sha256], self.curation)[0])

    def _useful(self, rows: list[Row]) -> list[Row]:
        """Unlabelled scored images, most useful first, groups spread; then the rest by name."""
        todo = sorted((r for r in rows if r.label is None and r.probability is not None), key=_rel)
        scores = usefulness(
            [r.probability for r in todo], self.threshold, [r.sha256 for r in todo], self.curation
        )
        ranked = [todo[i] for i in np.argsort(-scores, kind="stable")]  # ties by name
        rest = sorted(
            (r for r in rows if r.label is not None or r.probability is None),
            key=lambda r: (r.label is not None, r.rel),
        )
        return spread(ranked, self.group_key) + rest

    def cycle_filter(self) -> str:
        self.filter = FILTERS[(FILTERS.index(self.filter) + 1) % len(FILTERS)]
        self.refresh_view()
        return self.filter

    def cycle_sort(self) -> str:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.refresh_view()
        return self.sort

    def move_threshold(self, delta: float) -> float:
        self.threshold = round(min(1.0, max(0.0, self.threshold + delta)), 4)
        self.refresh_view()
        return self.threshold

    # -- updates from workers ----------------------------------------------------------

    def apply_scores(self, items: Iterable[ScanItem]) -> int:
        changed = 0
        for item in items:
            row = self.by_path.get(item.path)
            if row is None:
                continue
            row.sha256 = item.sha256 or row.sha256
            row.probability = item.probability
            row.error = f"{item.error_kind}: {item.error}" if item.error_kind else None
            changed += 1
        return changed

    def apply_labels(self, labels: dict[str, str | None]) -> None:
        """Set the current label of every row holding one of these hashes."""
        for row in self.rows:
            if row.sha256 in labels:
                row.label = labels[row.sha256]

    # -- counts and stats --------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        scored = sum(1 for r in self.rows if r.status != "pending")
        return {
            "total": len(self.rows),
            "scored": scored,
            "nsfw_labels": sum(1 for r in self.rows if r.label == "nsfw"),
            "sfw_labels": sum(1 for r in self.rows if r.label == "sfw"),
            "disagreements": sum(1 for r in self.rows if self.disagrees(r)),
            "errors": sum(1 for r in self.rows if r.error),
            "predicted_nsfw": sum(1 for r in self.rows if self.call(r) == "nsfw"),
        }

    def folder_counts(self) -> dict[str, tuple[int, int, int]]:
        """(images, predicted NSFW, labelled) per folder, each including its subfolders."""
        out: dict[str, list[int]] = {}
        for row in self.rows:
            parts = row.folder.split("/") if row.folder else []
            keys = [""] + ["/".join(parts[: i + 1]) for i in range(len(parts))]
            for key in keys:
                c = out.setdefault(key, [0, 0, 0])
                c[0] += 1
                c[1] += self.call(row) == "nsfw"
                c[2] += row.label is not None
        return {k: (v[0], v[1], v[2]) for k, v in out.items()}

    def folders(self) -> list[str]:
        return sorted({r.folder for r in self.rows} | set(self.folder_counts()))

    def stats(self) -> Stats:
        labelled = [r for r in self.rows if r.label is not None]
        scored = [r for r in labelled if r.probability is not None]
        y = [1 if r.label == "nsfw" else 0 for r in scored]
        s = [r.probability for r in scored]
        return Stats(confusion(y, s, self.threshold), auroc(y, s), len(labelled), len(scored))


def load_review(
    root: str | os.PathLike, store: Store, model_id: str, threshold: float
) -> tuple[Review, list[str]]:
    """Walk the folder, fill rows from the store's cache; returns the review and what to score."""
    root = Path(os.path.abspath(root))
    issues: list[WalkIssue] = []
    rows: list[Row] = []
    for path in walk_images(root, errors=issues):
        rel, folder = _place(path, root)
        try:
            st = os.stat(path)
            rows.append(Row(path, rel, folder, st.st_size, st.st_mtime_ns))
        except OSError as exc:
            rows.append(Row(path, rel, folder, error=f"unreadable: {exc.strerror or exc}"))
    # What the walk met and cannot score is a row too, with its reason (N2).
    for issue in issues:
        error = f"{issue.kind}: {issue.reason}"
        rows.append(Row(issue.path, *_place(issue.path, root), error=error))
    known = store.files([r.path for r in rows])
    shas = {f.sha256 for f in known.values() if f.sha256}
    probs = store.predictions(model_id, list(shas)) if shas else {}
    labels = store.current_labels(list(shas)) if shas else {}
    pending: list[str] = []
    for row in rows:
        if row.error:
            continue
        f = known.get(row.path)
        if f is None or f.size != row.size or f.mtime_ns != row.mtime_ns:
            pending.append(row.path)
            continue
        row.sha256 = f.sha256
        if f.error_kind in CONTENT_ERRORS:
            row.error = f"{f.error_kind}: {f.error}"
        elif f.sha256 in probs and not f.unchecked:  # else read again by an older check's
            row.probability = probs[f.sha256]
        else:
            pending.append(row.path)
        if f.sha256 in labels:
            row.label = labels[f.sha256].label
    return Review(root, rows, threshold, model_id), pending


def _rel(row: Row) -> str:
    return row.rel


def _place(path: str, root: Path) -> tuple[str, str]:
    """A row's text relative to the root, and its folder's ("" for the root itself)."""
    rel = path_text(os.path.relpath(path, root))
    return rel, os.path.dirname(rel).replace(os.sep, "/")
