"""`import-scores`: a scan's Parquet output into the store, by content hash, without rescoring."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from nsfw_tui.core.adapt_head import DIM
from nsfw_tui.core.errors import NsfwTuiError
from nsfw_tui.core.scan import checked_error
from nsfw_tui.core.store import ScoreRecord, Store
from nsfw_tui.core.structure import CHECK_VERSION

from .outdir import KEY, MANIFEST, OutDir
from .sources import is_uri

_CHUNK = 2000  # records per store transaction


@dataclass
class ImportSummary:
    model: str
    rows: int = 0
    scored: int = 0
    errors: int = 0
    features: int = 0
    remote: int = 0  # URIs and shard members: their bytes are not on this machine
    duplicates: int = 0


def stored_path(key: str) -> str:
    """Local paths stay as written (absolute); a file:// URI is its local path; other URIs
    and shard members (``SHARD#MEMBER``) verbatim."""
    if key.startswith("file://"):
        return key[len("file://") :]
    return key


def is_remote(path: str) -> bool:
    return is_uri(path) or "#" in path.rsplit("/", 1)[-1]


def _records(out: OutDir, summary: ImportSummary, manifest) -> Iterator[ScoreRecord]:
    seen: set[str] = set()
    for table in out.iter_parts(manifest):
        cols = {name: table.column(name).to_pylist() for name in table.column_names}
        feats = cols.get("features") or [None] * table.num_rows
        for i, key in enumerate(cols[KEY]):
            if key in seen:  # a part written twice over the same inputs: the first counts
                summary.duplicates += 1
                continue
            seen.add(key)
            path = stored_path(key)
            summary.rows += 1
            summary.remote += is_remote(path)
            prob = cols["probability"][i]
            kind = cols["error_kind"][i]
            features = None
            if prob is not None and feats[i]:
                # one row per sampled frame: fewer than n_frames for a long animation
                features = np.frombuffer(feats[i], dtype=np.float16).reshape(-1, DIM)
                features = features if features.shape[0] else None
                summary.features += features is not None
            if prob is None:
                summary.errors += 1
            else:
                summary.scored += 1
            error = cols["error"][i] or None
            yield ScoreRecord(
                path=path,
                size=cols["size"][i] or 0,
                mtime_ns=(cols.get("mtime_ns") or [0] * table.num_rows)[i] or 0,
                sha256=cols["sha256"][i],
                probability=prob,
                model_id=summary.model if prob is not None else None,
                width=cols["width"][i],
                height=cols["height"][i],
                format=cols["format"][i],
                n_frames=cols["n_frames"][i],
                features=features,
                error_kind=kind,
                error=error.split(": ", 1)[-1] if error else None,
                checked=checked_error(kind) if kind else CHECK_VERSION,
            )


def import_scores(
    target: str, store: Store, on_progress: Callable[[int, int], None] | None = None
) -> ImportSummary:
    """Load OUT's listed parts into ``store``; rows of one input count once.

    One transaction per chunk of rows: a stop keeps the chunks written, and a rerun writes
    the same rows again with the same values. ``on_progress(rows read, rows listed)``.
    """
    out = OutDir.open(target)
    manifest = out.manifest()
    if manifest is None:
        raise NsfwTuiError(f"{target} holds no {MANIFEST}: it is not the output of scan -o")
    if store.readonly:
        raise NsfwTuiError("the store is read-only; nothing imported")
    if store.model(manifest.model) is None:
        raise NsfwTuiError(
            f"{target} was scored by model {manifest.model!r}, which this store does not know"
        )
    summary = ImportSummary(manifest.model)
    listed = sum(int(p.get("rows", 0)) for p in manifest.parts)
    chunk: list[ScoreRecord] = []
    for record in _records(out, summary, manifest):
        chunk.append(record)
        if len(chunk) >= _CHUNK:
            store.record_files(chunk)
            chunk = []
            if on_progress:
                on_progress(summary.rows + summary.duplicates, listed)
    if chunk:
        store.record_files(chunk)
    if on_progress:
        on_progress(listed, listed)
    return summary
