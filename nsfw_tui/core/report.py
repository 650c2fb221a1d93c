"""Scan results as decisions and as CSV/JSON files in the original project's columns."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

from .atomic import atomic_write
from .decision import decide
from .errors import NsfwTuiError
from .names import path_b64
from .scan import ScanItem
from .store import Store

# frame_time (last): a video's highest-scoring frame, in seconds; empty for a still image
COLUMNS = (
    "image_path",
    "probability",
    "prediction",
    "class_name",
    "error",
    "label",
    "frame_time",
)


def decisions(items: Sequence[ScanItem], store: Store, threshold: float) -> list[dict]:
    shas = [i.sha256 for i in items if i.sha256]
    labels = store.current_labels(shas) if shas else {}
    rows = []
    for item in sorted(items, key=lambda i: (i.display_path, path_b64(i.path) or "")):
        label = labels[item.sha256].label if item.sha256 in labels else None
        decision = decide(item.probability, threshold, label)
        row: dict = {"image_path": item.display_path}
        # The text reads the same for a raw \xff and a literal "\xff": JSON also carries the
        # bytes of a name that is not UTF-8 (N1); CSV keeps the original project's columns.
        if (raw := path_b64(item.path)) is not None:
            row["image_path_b64"] = raw
        rows.append(
            row
            | {
                "probability": None if item.probability is None else round(item.probability, 6),
                "prediction": decision.prediction,
                "class_name": decision.class_name,
                "error": f"{item.error_kind}: {item.error}" if item.error_kind else "",
                "label": label or "",
                "frame_time": None if item.frame_time is None else round(item.frame_time, 3),
            }
        )
    return rows


def summary_counts(rows: Sequence[dict]) -> dict[str, int]:
    return {
        "nsfw": sum(1 for r in rows if r["prediction"] == 1),
        "sfw": sum(1 for r in rows if r["prediction"] == 0),
        "error": sum(1 for r in rows if r["prediction"] is None),
        "labelled": sum(1 for r in rows if r["label"]),
    }


def write_report(rows: Sequence[dict], output: str | os.PathLike) -> None:
    """Write CSV or JSON by suffix, atomically: a crash never leaves half a file."""
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise NsfwTuiError(f"output must end in .csv or .json, got {output.name}")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise NsfwTuiError(f"the output folder {folder} does not exist")
    try:
        with atomic_write(output, "w", newline="") as fh:
            if suffix == ".csv":
                writer = csv.DictWriter(fh, fieldnames=COLUMNS)
                writer.writeheader()
                for r in rows:
                    writer.writerow({k: "" if r[k] is None else r[k] for k in COLUMNS})
            else:
                json.dump(list(rows), fh, indent=2, ensure_ascii=False)
                fh.write("\n")
    except OSError as exc:
        raise NsfwTuiError(f"cannot write {output}: {exc.strerror or exc}") from exc
