"""The runs table: a training run's row from start to finish, and reading runs back."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from omegaconf import DictConfig

from nsfw_tui.core.config import to_container
from nsfw_tui.core.store import Store


def new_run_id() -> str:
    """Sortable by time, unique across processes: 20251126-221503-3f9a0c."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def insert_run(
    store: Store, run_id: str, cfg: DictConfig, summary: dict[str, Any], val_hashes: list[str]
) -> None:
    with store.write():
        store.conn.execute(
            "INSERT INTO runs (id, created_at, status, config, epochs, metrics, val_hashes) "
            "VALUES (?, ?, 'running', ?, '[]', ?, ?)",
            (run_id, time.time(), json.dumps(to_container(cfg)), json.dumps(summary),
             json.dumps(val_hashes)),
        )  # fmt: skip


def update_epochs(store: Store, run_id: str, epochs: list[dict[str, Any]]) -> None:
    # per epoch, so a run killed mid-way still shows how far it got
    with store.write():
        store.conn.execute("UPDATE runs SET epochs = ? WHERE id = ?", (json.dumps(epochs), run_id))


def close_run(
    store: Store,
    run_id: str,
    status: str,
    epochs: list[dict[str, Any]],
    summary: dict[str, Any],
    checkpoint: str | None = None,
    model_id: str | None = None,
) -> None:
    with store.write():
        store.conn.execute(
            "UPDATE runs SET status = ?, finished_at = ?, epochs = ?, metrics = ?, "
            "checkpoint = ?, model_id = ? WHERE id = ?",
            (status, time.time(), json.dumps(epochs), json.dumps(summary), checkpoint, model_id,
             run_id),
        )  # fmt: skip


def runs(store: Store) -> list[dict]:
    """Every run, newest first, with its JSON fields parsed."""
    cur = store.conn.execute("SELECT * FROM runs ORDER BY created_at DESC, id DESC")
    cols = [c[0] for c in cur.description]
    return [_parse_run(dict(zip(cols, row, strict=True))) for row in cur.fetchall()]


def run(store: Store, run_id: str | None = None) -> dict | None:
    """One run by id, or the latest when ``run_id`` is None; None when there is none."""
    if run_id is None:
        cur = store.conn.execute("SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT 1")
    else:
        cur = store.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
    row = cur.fetchone()
    if row is None:
        return None
    cols = [c[0] for c in cur.description]
    return _parse_run(dict(zip(cols, row, strict=True)))


def _parse_run(row: dict[str, Any]) -> dict[str, Any]:
    def load(text: str | None, default: Any) -> Any:
        try:
            return json.loads(text) if text else default
        except ValueError:
            return default

    summary = load(row["metrics"], {})
    return {
        "id": row["id"],
        "created_at": row["created_at"],
        "finished_at": row["finished_at"],
        "status": row["status"],
        "config": load(row["config"], {}),
        "epochs": load(row["epochs"], []),
        "metrics": summary.get("metrics", {}),
        "best_epoch": summary.get("best_epoch"),
        "threshold": summary.get("threshold"),
        "counts": summary.get("counts", {}),
        "message": summary.get("message", ""),
        "checkpoint": row["checkpoint"],
        "model_id": row["model_id"],
        "val_hashes": load(row["val_hashes"], []),
    }
