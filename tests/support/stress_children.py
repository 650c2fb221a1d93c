"""Child processes for the store stress test: each prints one JSON line per acknowledged write.

Run as `python tests/support/stress_children.py ROLE ...`; every line is printed only after the
store has committed what it reports, so a `kill -9` can lose unreported work, never reported.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `support`


def say(**fields) -> None:
    print(json.dumps(fields), flush=True)


def label_writer(store_path: str, folder: str, start: int) -> None:
    """The review screen's writer, as the app drives it: one label per key press."""
    import queue

    from nsfw_tui.tui.label_writer import LabelWriter, SetLabels
    from nsfw_tui.tui.messages import LabelsFailed, LabelsSaved, StoreBusy

    posted: queue.Queue = queue.Queue()
    writer = LabelWriter(Path(store_path), posted.put)
    writer.start()
    files = sorted(Path(folder).iterdir())
    n = start
    while True:
        path = files[n % len(files)]
        label = "nsfw" if (n // len(files)) % 2 == 0 else "sfw"
        writer.submit(SetLabels([(str(path), None)], label))
        n += 1
        time.sleep(0.05)
        while not posted.empty():
            msg = posted.get()
            if isinstance(msg, LabelsSaved):
                say(role="writer", batch=msg.batch, labels=msg.labels, n=n)
            elif isinstance(msg, StoreBusy):
                say(role="writer", busy=msg.seconds, waiting=msg.waiting)
            elif isinstance(msg, LabelsFailed):
                say(role="writer", failed=msg.reason)


def fake_cli(argv: list[str]) -> None:
    """The real `nsfw-tui` command with the tests' fake scorer (no model download)."""
    import nsfw_tui.models.registry as reg
    from support.tui import RedScorer

    reg.load_scorer = lambda row, **kw: RedScorer()
    from nsfw_tui.cli import main

    sys.argv = ["nsfw-tui", *argv]
    main()


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    if role == "writer":
        label_writer(rest[0], rest[1], int(rest[2]))
    elif role == "cli":
        fake_cli(rest)
    else:
        raise SystemExit(f"unknown role {role}")
