"""The `serve` command: the active model behind a local REST endpoint (POST /invocations)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ..core.errors import NsfwTuiError
from ..core.thresholds import format_threshold
from .options import (
    HomeOption,
    ModelOption,
    console,
    handles_errors,
    open_store,
    overrides_argument,
)

Overrides = overrides_argument("port=8080 max_images=16")

app = typer.Typer()


@app.command()
@handles_errors
def serve(
    overrides: Overrides = None,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default 127.0.0.1; others need --token).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 5000).")] = None,
    model: ModelOption = None,
    root: Annotated[
        Path | None,
        typer.Option(help="Folder that path requests may read from; without it paths are refused."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="NSFW_TUI_TOKEN",
            help="Bearer token every request must carry; required off loopback.",
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(help="Another Host name to answer (repeatable; '*' for any, with a token)."),
    ] = None,
    labels: Annotated[
        bool,
        typer.Option(
            "--labels",
            help="Answer with a person's label from the store (it decides). Off by default: "
            "with it, anyone who can post learns which images carry a label.",
        ),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Serve the model over HTTP: POST /invocations scores paths or uploads; GET /health."""
    from ..core.config import load_config
    from ..core.scan import inference_threads
    from ..core.scorers import LazyScorer
    from ..models.registry import load_scorer, resolve_model
    from ..serve import MiB, check_binding, require_extras, run, store_labels

    cfg = load_config(None, overrides or [], section="serve").serve
    host = host or str(cfg.host)
    port = port if port is not None else int(cfg.port)
    token = token or cfg.token
    root = root if root is not None else (Path(cfg.root) if cfg.root else None)
    if not 1 <= port <= 65535:
        raise NsfwTuiError(f"--port must be within [1, 65535], got {port}")
    if root is not None and not root.is_dir():
        raise NsfwTuiError(f"--root must be an existing folder, got {root}")
    check_binding(host, token)  # before any model loads
    require_extras()
    h, store = open_store(home)
    with store:
        row = resolve_model(store, model)
    decode_workers = 2
    # A server loads its model now: a broken model fails at start, not on the first request.
    scorer = load_scorer(row, threads=inference_threads(decode_workers), cache_dir=h.cache_dir)
    if isinstance(scorer, LazyScorer):
        scorer = scorer.loaded()
    where = f"paths under {root.resolve()}" if root else "uploads only (no --root: paths refused)"
    extras = "; bearer token required" if token else ""
    extras += "; answers carry a person's labels" if labels else ""
    banner = (
        f"serving {row.id} (threshold {format_threshold(row.threshold)}) "
        f"on http://{_url_host(host)}:{port} "
        f"- {where}{extras}. Ctrl+C stops."
    )
    run(
        host,
        port,
        scorer=scorer,
        threshold=row.threshold,
        model_id=row.id,
        token=token,
        allow_hosts=allow_host or (),
        root=root,
        max_body_bytes=int(float(cfg.max_body_mb) * MiB),
        max_images=int(cfg.max_images),
        labels=store_labels(h.store_path) if labels else None,
        decode_workers=decode_workers,
        announce=lambda: console.print(Text(banner)),
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
