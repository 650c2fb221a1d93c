"""Where the store and models live: --home, else NSFW_TUI_HOME, else the user data folder."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import NsfwTuiError

ENV_VAR = "NSFW_TUI_HOME"


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def store_path(self) -> Path:
        return self.root / "store.db"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def cache_dir(self) -> Path:
        """What can be rebuilt at any time (the prepared built-in graph); safe to delete."""
        return self.root / "cache"

    @property
    def thumbnail_dir(self) -> Path:
        """The grid's thumbnails, keyed by content hash (under the cache: rebuildable)."""
        return self.cache_dir / "thumbnails"

    def watch_journal(self, folder: str | os.PathLike) -> Path:
        """The decision log `watch` keeps for ``folder`` when no --log is given (W13).

        It is what makes stdout at-least-once: at start the watcher prints again what the
        store decided and this journal lacks.
        """
        import hashlib

        key = hashlib.sha256(os.fsencode(os.path.abspath(folder))).hexdigest()[:16]
        return self.root / "watch" / f"{key}.jsonl"

    @property
    def demo_dir(self) -> Path:
        """The demo's own home: its labels, heads and active model never touch this one's."""
        return self.root / "demo"


def resolve_home(home: str | os.PathLike | None = None) -> Home:
    """Pick the home folder and create it on first use."""
    if home is not None:
        root = Path(home)
    elif os.environ.get(ENV_VAR):
        root = Path(os.environ[ENV_VAR])
    else:
        from platformdirs import user_data_dir

        root = Path(user_data_dir("nsfw-tui", appauthor=False))
    root = root.expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / "models").mkdir(exist_ok=True)
    except OSError as exc:
        if root.is_dir() and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise NsfwTuiError(
                f"the home folder {root} is read-only ({exc.strerror or exc}); "
                f"choose a writable one with --home or ${ENV_VAR}"
            ) from exc
        raise NsfwTuiError(f"cannot create the home folder {root}: {exc.strerror or exc}") from exc
    if not root.is_dir():
        raise NsfwTuiError(f"the home path {root} is not a folder")
    return Home(root.resolve())
