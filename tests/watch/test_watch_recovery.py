"""Watch across kill -9: quarantine intents (W12), an exactly-once log (W13), label sources."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from support.tui import prepare_home
from support.watch import Harness, image_bytes
from typer.testing import CliRunner

from nsfw_tui.cli import app as cli_app
from nsfw_tui.core.home import resolve_home
from nsfw_tui.core.quarantine import quarantine_move, recover_moves, release, temp_path
from nsfw_tui.core.store import ScoreRecord, Store

SEED = int(os.environ.get("NSFW_TUI_FAULT_SEED", "20240601"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parsed(log: Path) -> tuple[list[dict], int]:
    """The log's decision lines, and how many lines are not JSON."""
    lines, bad = [], 0
    for raw in log.read_bytes().split(b"\n"):
        if raw:
            try:
                lines.append(json.loads(raw))
            except ValueError:
                bad += 1
    return lines, bad


# -- W12: a quarantine move is recorded before the rename --------------------------------


def test_w12_recovery_completes_or_rolls_back_each_interrupted_move(tmp_path):
    inbox, q = tmp_path / "inbox", tmp_path / "q"
    inbox.mkdir()
    q.mkdir()
    cases: dict[str, tuple[bool, bool]] = {}  # name -> (src after, dest after)

    def intent(store: Store, name: str, src: bytes | None, dest: bytes | None, link=False) -> int:
        at, to = inbox / name, q / name
        content = src or dest or b""
        if src is not None:
            at.write_bytes(src)
            st = at.stat()
            store.record_files([ScoreRecord(str(at), st.st_size, st.st_mtime_ns, sha(content))])
        if link:
            os.link(at, to)
        elif dest is not None:
            to.write_bytes(dest)
        return store.intend_move(str(at), str(to), sha(content), "probability 0.9 >= 0.5")

    with Store.open(tmp_path / "store.db") as store:
        intent(store, "moved.png", None, b"moved")  # killed after the rename
        cases["moved.png"] = (False, True)
        intent(store, "never.png", b"never", None)  # killed before the rename
        cases["never.png"] = (True, False)
        intent(store, "linked.png", b"linked", None, link=True)  # between link and unlink
        cases["linked.png"] = (False, True)
        copied = intent(store, "copied.png", b"copied", b"copied")  # cross-device copy
        Path(temp_path(str(q / "copied.png"), copied)).write_bytes(b"cop")
        cases["copied.png"] = (False, True)
        intent(store, "other.png", b"mine", b"someone else's")  # dest is not ours
        cases["other.png"] = (True, True)
        intent(store, "gone.png", None, None)  # both gone
        cases["gone.png"] = (False, False)

        assert store.open_move(str(q / "moved.png")) is None, "an intent is not a move yet"
        assert recover_moves(store) == (3, 3)
        assert store.intended_moves() == []
        for name, (src_after, dest_after) in cases.items():
            assert (inbox / name).exists() == src_after, name
            assert (q / name).exists() == dest_after, name
        assert (q / "other.png").read_bytes() == b"someone else's", "never delete another's file"
        assert (inbox / "other.png").read_bytes() == b"mine"
        assert not [p for p in q.iterdir() if p.name.startswith(".")], "temporary copies removed"
        done = {Path(m.dest).name for m in store.moves()}
        assert done == {"moved.png", "linked.png", "copied.png"}
        assert store.files([str(q / "linked.png")]), "the file row follows the file"
        for name in sorted(done):
            origin, back = release(store, q / name, label=None)
            assert back == str(inbox / name) and (inbox / name).exists()

        # `release` itself recovers first: no watcher needs to start again.
        intent(store, "later.png", None, b"later")
        origin, back = release(store, q / "later.png", label=None)
        assert (origin, back) == (str(inbox / "later.png"), str(inbox / "later.png"))


def test_w12_the_intent_names_the_exact_target_and_a_lost_race_takes_the_next(
    tmp_path, monkeypatch
):
    src_dir, q = tmp_path / "inbox", tmp_path / "q"
    src_dir.mkdir()
    q.mkdir()
    (q / "hot.png").write_bytes(b"taken before")
    real_lexists = os.path.lexists
    raced = {"n": 0}

    def late_lexists(path):  # another process takes hot-1.png between check and link
        if str(path).endswith("hot-1.png") and not raced["n"]:
            raced["n"] = 1
            (q / "hot-1.png").write_bytes(b"taken in the race")
            return False
        return real_lexists(path)

    monkeypatch.setattr(os.path, "lexists", late_lexists)
    with Store.open(tmp_path / "store.db") as store:
        (src_dir / "hot.png").write_bytes(b"hot")
        dest = quarantine_move(store, str(src_dir / "hot.png"), str(q / "hot.png"), "s1", "r")
        assert dest == str(q / "hot-2.png") and (q / "hot-2.png").read_bytes() == b"hot"
        assert (q / "hot-1.png").read_bytes() == b"taken in the race"
        assert [m.dest for m in store.moves()] == [dest] and store.intended_moves() == []

        # Across file systems: a copy under a temporary name, linked to its name when whole.
        real_link = os.link

        def cross_device(src, dst, **kw):
            if Path(src).parent != Path(dst).parent:
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            return real_link(src, dst, **kw)

        monkeypatch.setattr(os, "link", cross_device)
        (src_dir / "far.png").write_bytes(b"far")
        os.utime(src_dir / "far.png", ns=(1, 1_000_000_000))
        dest = quarantine_move(store, str(src_dir / "far.png"), str(q / "far.png"), "s2", "r")
        assert Path(dest).read_bytes() == b"far" and os.stat(dest).st_mtime_ns == 1_000_000_000
        assert not (src_dir / "far.png").exists()
        assert not [p for p in q.iterdir() if p.name.startswith(".")]
        assert store.open_move(dest).sha256 == "s2" and store.intended_moves() == []


# -- W13: the log lacks nothing and repeats nothing ----------------------------------------


@pytest.mark.slow
def test_w13_restart_logs_exactly_what_the_log_lacks_after_a_torn_line(tmp_path):
    h = Harness(tmp_path)
    q = tmp_path / "q"
    try:
        h.start(quarantine=str(q))
        names = [f"f{i}.png" for i in range(8)]
        for i, name in enumerate(names):  # even: NSFW, quarantined; odd: SFW
            (h.inbox / name).write_bytes(image_bytes(900 + i, red=250 if i % 2 == 0 else 5))
        h.wait_lines(8, quiet=0)
        h.stop()
        frames = h.scorer.frames
        # As if killed after the store had these decisions but before the log did: four
        # lines are lost, one of them torn half-way at the end. Two of the four files are
        # in quarantine already (their lines come from their moves), two are not.
        gone = {"f0.png", "f1.png", "f2.png", "f3.png"}
        raw = h.log.read_bytes().splitlines(keepends=True)
        kept = [x for x in raw if Path(json.loads(x)["path"]).name not in gone]
        lost = [x for x in raw if Path(json.loads(x)["path"]).name in gone]
        h.log.write_bytes(b"".join(kept) + lost[0][: len(lost[0]) // 2])
        lost_paths = {json.loads(line)["path"] for line in lost}

        h.lines.clear()
        h.start(quarantine=str(q))
        h.wait_lines(len(lost), quiet=0)
        assert {d["path"] for d in h.lines} == lost_paths
        assert h.scorer.frames == frames, "told again from the store, not scored again"
        for d in h.lines:
            assert d["cached"] and (d["action"] == "quarantined") == (d["decision"] == "nsfw")
            assert d["dest"] is None or Path(d["dest"]).exists()
        assert Counter(d["action"] for d in h.lines) == {"quarantined": 2, "none": 2}
        h.watcher.request_rescan("test")
        (h.inbox / "new.png").write_bytes(image_bytes(999, red=5))
        h.wait_lines(len(lost) + 1)
    finally:
        h.stop()
    lines, bad = parsed(h.log)
    assert bad == 1, "the torn fragment stays one line of its own; the next line is whole"
    assert Counter(Path(d["path"]).name for d in lines) == Counter([*names, "new.png"])


def test_w13_a_log_left_empty_by_a_kill_before_its_first_line_still_gets_the_lines(tmp_path):
    h = Harness(tmp_path)
    try:
        h.start()
        for i in range(3):
            (h.inbox / f"e{i}.png").write_bytes(image_bytes(950 + i, red=5))
        h.wait_lines(3, quiet=0)
        h.stop()
        h.log.write_bytes(b"")  # killed after the store had them, before the first line
        os.utime(h.log, (time.time() - 30, time.time() - 30))  # created when that run began
        h.lines.clear()
        h.start()
        h.wait_lines(3)
    finally:
        h.stop()
    assert sorted(Path(d["path"]).name for d in parsed(h.log)[0]) == ["e0.png", "e1.png", "e2.png"]


def test_label_sources_are_human_import_and_model_as_they_are(tmp_path):
    h = Harness(tmp_path)
    imported, person, undone = (image_bytes(960 + i, red=250) for i in range(3))
    with Store.open(h.store_path) as store:
        store.set_labels([sha(imported)], "sfw", source="import")
        store.set_labels([sha(person)], "sfw", source="human")
        store.set_labels([sha(undone)], "sfw", source="import")
        batch = store.set_labels([sha(undone)], "nsfw", source="human")
        store.undo_batch(batch)  # a person's undo: back to sfw
    try:
        h.start()
        model = image_bytes(963, red=250)
        for name, data in [
            ("imported.png", imported),
            ("person.png", person),
            ("undone.png", undone),
            ("model.png", model),
        ]:
            (h.inbox / name).write_bytes(data)
        h.wait_lines(4)
    finally:
        h.stop()
    by = h.by_name()
    assert (by["imported.png"]["source"], by["imported.png"]["decision"]) == ("import", "sfw")
    assert "import" in by["imported.png"]["reason"]
    assert (by["person.png"]["source"], by["person.png"]["decision"]) == ("human", "sfw")
    assert (by["undone.png"]["source"], by["undone.png"]["decision"]) == ("human", "sfw")
    assert (by["model.png"]["source"], by["model.png"]["decision"]) == ("model", "nsfw")


# -- W12 + W13 with real processes -----------------------------------------------------------

# The child is the real `nsfw-tui watch --headless` with the fake scorer. FAULT=point:n
# makes it SIGKILL itself at the n-th pass through one of the windows a kill can hit:
# after a batch is in the store (record), after a move's intent (intent), right after the
# link into quarantine (link), before a move is marked done (complete), before a line
# reaches the log (log). EXDEV=1 makes every link from outside the quarantine fail as
# across file systems, so moves go through a temporary copy.
CHILD = """
import errno, os, signal, sys
sys.path.insert(0, 'tests')
import nsfw_tui.models.registry as reg
from support.tui import RedScorer
reg.load_scorer = lambda row, **kw: RedScorer()
from nsfw_tui.core import store as store_mod
from nsfw_tui.core.watch import log as watch_log
point, _, count = os.environ.get('FAULT', '').partition(':')
left = [int(count or 0)]
Q = os.environ['QDIR'] + os.sep

def hit(name):
    if name == point:
        left[0] -= 1
        if left[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)

def wrap(cls, meth, name, before=False):
    orig = getattr(cls, meth)
    def call(*a, **k):
        if before:
            hit(name)
        out = orig(*a, **k)
        if not before:
            hit(name)
        return out
    setattr(cls, meth, call)

wrap(store_mod.Store, 'record_files', 'record')
wrap(store_mod.Store, 'intend_move', 'intent')
wrap(store_mod.Store, 'complete_move', 'complete', before=True)
wrap(watch_log.DecisionLog, 'write', 'log', before=True)
real_link = os.link
def link(src, dst, **kw):
    if os.environ.get('EXDEV') and not os.fspath(src).startswith(Q):
        raise OSError(errno.EXDEV, 'Invalid cross-device link')
    real_link(src, dst, **kw)
    if os.fspath(dst).startswith(Q):
        hit('link')
os.link = link
from nsfw_tui.cli import main
sys.argv = ['nsfw-tui'] + sys.argv[1:]
main()
"""
POINTS = ["external", "record", "intent", "link", "complete", "log"]
ROUNDS = 20
PER_ROUND = 8


def planned(r: int, i: int) -> tuple[str, bytes]:
    """Round r's i-th file: NSFW for i = 0, 3, 6, junk (an error) for i = 7, else SFW."""
    if i == 7:
        return f"r{r:02d}_{i}.png", b"not an image %d" % r
    return f"r{r:02d}_{i}.png", image_bytes(5000 + r * 10 + i, red=250 if i % 3 == 0 else 5)


@pytest.mark.slow
def test_w12_w13_twenty_kill_9_rounds_during_a_burst_with_quarantine_and_log(tmp_path):
    rng = random.Random(SEED)
    inbox, outside, q = tmp_path / "inbox", tmp_path / "outside", tmp_path / "q"
    inbox.mkdir()
    outside.mkdir()
    home = resolve_home(tmp_path / "home")
    prepare_home(home)
    log = tmp_path / "watch.jsonl"
    argv = [sys.executable, "-c", CHILD, "watch", str(inbox), "--headless", "--log", str(log)]
    argv += ["--quarantine", str(q), "--home", str(home.root)]
    argv += ["settle_s=0.2", "never_settles_timeout_s=1", "scan.workers=0"]
    repo = Path(__file__).parents[2]
    files: dict[str, bytes] = {}

    def burst(r: int) -> None:
        for i in range(PER_ROUND):
            name, data = planned(r, i)
            files[name] = data
            if i == 7:  # old junk, renamed in: its decode failure is final at once
                (outside / name).write_bytes(data)
                os.utime(outside / name, (1, 1))
                os.rename(outside / name, inbox / name)
            else:
                (inbox / name).write_bytes(data)
            time.sleep(rng.uniform(0.0, 0.06))

    def run(r: int, env: dict, kill_after: float | None) -> tuple[int, str, bool]:
        out = tmp_path / f"round{r:02d}.err"
        killed_itself = False
        with open(out, "w") as err, open(os.devnull, "w") as devnull:
            proc = subprocess.Popen(argv, cwd=repo, env=env, stdout=devnull, stderr=err)
            writer = threading.Thread(target=burst, args=(r,)) if r < ROUNDS else None
            if writer:
                writer.start()
            try:
                if r == ROUNDS:  # the last run: no kill, until every file has its line
                    deadline = time.monotonic() + 60
                    # Running first: every line may be there already, and a SIGTERM during
                    # the imports, before the handler is set, would kill it unheard.
                    while time.monotonic() < deadline and "watching " not in out.read_text():
                        time.sleep(0.05)
                    while time.monotonic() < deadline and not set(files) <= {
                        Path(d["path"]).name for d in parsed(log)[0]
                    }:
                        time.sleep(0.1)
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
                else:
                    try:
                        proc.wait(kill_after)
                        killed_itself = True
                    except subprocess.TimeoutExpired:
                        proc.send_signal(signal.SIGKILL)
                        proc.wait(10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                if writer:
                    writer.join()
        return proc.returncode, out.read_text(), killed_itself

    hits: Counter = Counter()
    notices = ""
    started = time.monotonic()
    for r in range(ROUNDS + 1):
        env = {**os.environ, "QDIR": str(q)}
        point = POINTS[r % len(POINTS)]
        kill_after: float | None = None
        if r < ROUNDS:
            if point == "external":
                kill_after = rng.uniform(0.4, 1.6)
            else:
                env["FAULT"] = f"{point}:{rng.randint(1, 3)}"
                kill_after = 4.0  # not reached by then: killed from outside instead
            if (r // len(POINTS)) % 2:
                env["EXDEV"] = "1"
        code, err, killed_itself = run(r, env, kill_after)
        notices += err
        if r < ROUNDS:
            assert code == -signal.SIGKILL, err
            hits[point] += point == "external" or killed_itself
        else:
            assert code == 0, err
    took = time.monotonic() - started

    lines, bad = parsed(log)
    assert bad == 0, "no torn line"
    counts = Counter(Path(d["path"]).name for d in lines)
    assert set(counts) == set(files), f"missing {set(files) - set(counts)}"
    assert max(counts.values()) == 1, [n for n, c in counts.items() if c > 1]
    quarantined = []
    for d in lines:
        name = Path(d["path"]).name
        assert d["sha256"] in (sha(files[name]), None)
        if d["decision"] == "sfw":
            assert d["action"] == "none" and (inbox / name).read_bytes() == files[name]
        else:
            assert d["action"] == "quarantined" and not (inbox / name).exists(), d
            assert Path(d["dest"]).read_bytes() == files[name]
            quarantined.append(d["dest"])
    assert len(quarantined) == ROUNDS * 4, "three NSFW files and one junk file per round"
    assert sorted(quarantined) == sorted(str(p) for p in q.rglob("*")), "no stray files"

    with Store.open(home.store_path, check=False) as store:
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store.intended_moves() == []
        assert all(store.open_move(dest) for dest in quarantined)
    result = CliRunner().invoke(
        cli_app, ["release", *quarantined, "--home", str(home.root)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert all((inbox / Path(d["path"]).name).exists() for d in lines)
    assert all(hits[p] for p in POINTS), f"every window was hit at least once: {hits}"
    assert "decisions the log lacked" in notices, "some kill fell between store and log"
    assert "interrupted moves" in notices, "some kill fell inside a move"
    print(
        f"\nW12/W13: {ROUNDS} kill -9 rounds ({dict(hits)}), {len(files)} files, "
        f"{len(quarantined)} quarantined and released, each logged once, {took:.1f} s"
    )


def test_w13_stdout_alone_is_at_least_once_across_a_kill(tmp_path):
    """Without --log the watcher keeps its journal under the home: a kill right after a batch
    is stored (before any line is printed) still gets every line printed at the next start."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = [f"s{i}.png" for i in range(3)]
    for i, name in enumerate(names):
        (inbox / name).write_bytes(image_bytes(7000 + i, red=250 if i == 0 else 5))
    home = resolve_home(tmp_path / "home")
    prepare_home(home)
    argv = [sys.executable, "-c", CHILD, "watch", str(inbox), "--headless"]
    argv += ["--home", str(home.root), "settle_s=0.2", "scan.workers=0"]
    repo = Path(__file__).parents[2]
    env = {**os.environ, "QDIR": str(tmp_path / "unused"), "FAULT": "record:1"}
    first = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == -signal.SIGKILL, first.stderr
    printed = [json.loads(x) for x in first.stdout.splitlines() if x.startswith("{")]
    assert not printed, "killed after the store recorded the batch, before any line"
    with Store.open(home.store_path) as store:
        assert len(store.files([str(inbox / n) for n in names])) == 3  # the store has them
    env.pop("FAULT")
    proc = subprocess.Popen(argv, cwd=repo, env=env, stdout=subprocess.PIPE, text=True)
    seen: list[dict] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and {Path(d["path"]).name for d in seen} < set(names):
            line = proc.stdout.readline()
            if line.startswith("{"):
                seen.append(json.loads(line))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert sorted(Path(d["path"]).name for d in seen) == names
    assert home.watch_journal(inbox).exists()
