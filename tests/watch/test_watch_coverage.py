"""Native events that do not cover the tree: refused watches and probe files (W15)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from support.tui import prepare_home, wait_for, watch_app
from support.watch import DEAF_CLI, SETTLE, Harness, deaf_to_the_root, image_bytes
from textual.widgets import Static

from nsfw_tui.core.home import resolve_home
from nsfw_tui.core.watch.clock import ManualClock
from nsfw_tui.core.watch.coverage import PROBE_PREFIX, Coverage, limit_advice, remote_mounts

LINUX = sys.platform.startswith("linux")


@pytest.fixture
def harness(tmp_path):
    holder: list[Harness] = []

    def make(**options) -> Harness:
        h = Harness(tmp_path, **options)
        holder.append(h)
        return h

    yield make
    for h in holder:
        h.stop()


def probes_in(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(PROBE_PREFIX)]


def polling_notices(h: Harness) -> list[str]:
    """The notices that say the watch polls because native events fall short or fail."""
    return [n for n in h.notices if n.startswith("native file events")]


# -- the probe, on a hand-moved clock -----------------------------------------------------


@pytest.fixture
def coverage(tmp_path):
    notices: list[str] = []
    cov = Coverage(
        str(tmp_path), clock=ManualClock(), wait_s=2.0, notice=notices.append, mountinfo=str
    )  # no mounts known: the probe alone
    cov.notices = notices
    return cov


def test_a_probe_whose_event_comes_passes_and_leaves_nothing(coverage, tmp_path):
    coverage.probe(epoch=0)
    (probe,) = probes_in(tmp_path)
    coverage.probe(epoch=0)  # one probe out at a time
    assert len(probes_in(tmp_path)) == 1
    assert coverage.saw(str(tmp_path / probe)), "a probe's event goes no further"
    assert coverage.failure(epoch=0) is None
    assert coverage.probes_ok == 1 and probes_in(tmp_path) == []
    assert not coverage.saw(str(tmp_path / "photo.png"))
    assert not coverage.owns(str(tmp_path / "sub" / probe)), "only the root holds probes"


def test_a_probe_event_dispatched_before_the_write_returns_still_counts(
    coverage, tmp_path, monkeypatch
):
    import nsfw_tui.core.watch.coverage as coverage_module

    def open_and_dispatch(path, mode):  # the observer thread runs first, as under load
        fh = open(path, mode)  # noqa: SIM115  (closed by the caller's with)
        coverage.saw(path)
        return fh

    monkeypatch.setattr(coverage_module, "open", open_and_dispatch, raising=False)
    coverage.probe(epoch=0)
    coverage.clock.advance(5.0)
    assert coverage.failure(epoch=0) is None and coverage.probes_ok == 1


def test_a_probe_without_an_event_fails_after_the_wait_and_is_removed(coverage, tmp_path):
    coverage.probe(epoch=0)
    coverage.clock.advance(1.9)
    assert coverage.failure(epoch=0) is None
    coverage.clock.advance(0.1)
    why, advice = coverage.failure(epoch=0)
    assert why.startswith("no event came within 2 s for a probe file written in")
    assert "network or FUSE" in advice
    assert probes_in(tmp_path) == []


def test_a_probe_lost_to_an_overflow_or_a_restart_is_written_again(coverage, tmp_path):
    coverage.probe(epoch=(0, 0))
    first = probes_in(tmp_path)
    coverage.clock.advance(2.0)
    assert coverage.failure(epoch=(0, 1)) is None, "events were lost for a known reason"
    assert len(probes_in(tmp_path)) == 1 and probes_in(tmp_path) != first
    coverage.clock.advance(2.0)
    assert coverage.failure(epoch=(0, 1)) is not None


def test_a_folder_that_cannot_hold_a_probe_is_said_once(tmp_path):
    notices: list[str] = []
    missing = tmp_path / "gone"
    cov = Coverage(
        str(missing), clock=ManualClock(), wait_s=2.0, notice=notices.append, mountinfo=str
    )
    cov.probe(epoch=0)
    cov.probe(epoch=0)
    assert len(notices) == 1 and "cannot write a probe file" in notices[0]
    assert cov.failure(epoch=0) is None


def test_a_refused_watch_counts_only_for_a_folder_still_there(coverage, tmp_path):
    limit = OSError(errno.ENOSPC, "inotify watch limit reached")
    coverage.refused(str(tmp_path / "removed-meanwhile"), limit)
    assert coverage.failure(epoch=0) is None
    (tmp_path / "deep").mkdir()
    coverage.refused(str(tmp_path / "deep"), limit)
    why, advice = coverage.failure(epoch=0)
    deep = tmp_path / "deep"
    assert why == f"the kernel refused a watch for {deep} (inotify watch limit reached)"
    assert "fs.inotify.max_user_watches" in advice and "sudo sysctl" in advice


def test_limit_advice_names_the_limit_and_the_sysctl_command():
    watches = limit_advice(OSError(errno.ENOSPC, "inotify watch limit reached"))
    assert "fs.inotify.max_user_watches" in watches
    assert "sudo sysctl fs.inotify.max_user_watches=" in watches
    assert "/etc/sysctl.d/" in watches
    instances = limit_advice(OSError(errno.EMFILE, "inotify instance limit reached"))
    assert "sudo sysctl fs.inotify.max_user_instances=" in instances
    assert limit_advice(OSError(errno.EACCES, "denied")) == ""


# -- mounts whose changes made elsewhere never reach inotify --------------------------------

MOUNTINFO = r"""22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
40 22 0:45 / /fake/srv/uploads rw,relatime shared:20 - nfs4 server:/export rw,vers=4.2
41 22 0:46 / /fake/home/My\040Share rw - fuse.sshfs me@host:/ rw,user_id=1000
42 22 0:47 / /fake/data/in/.snapshots rw - nfs filer:/snap rw
43 22 0:48 / /fake/data/in/ext rw - cifs //nas/ext rw
44 22 0:49 / /fake/usb rw - fuseblk /dev/sdb1 rw
45 22 0:50 / /fake/stacked rw - nfs4 server:/old rw
46 45 252:2 / /fake/stacked rw - ext4 /dev/vdb1 rw
"""


@pytest.mark.parametrize(
    ("root", "remote"),
    [
        ("/fake/srv/uploads/inbox", [("/fake/srv/uploads", "nfs4")]),  # lies on one
        ("/fake/home/My Share", [("/fake/home/My Share", "fuse.sshfs")]),  # is one
        ("/fake/data/in", [("/fake/data/in/ext", "cifs")]),  # holds one (and a hidden one)
        ("/fake/usb", []),  # a local disk through FUSE
        ("/fake/srv/uploads2", []),  # a name that only starts like a mount point
        ("/fake/stacked/inbox", []),  # a local file system mounted over the network one
        ("/fake/plain", []),
    ],
)
def test_remote_mounts_are_those_the_tree_lies_on_or_holds(root, remote):
    assert remote_mounts(root, MOUNTINFO) == remote


def test_w15_a_tree_on_a_network_mount_is_polled_from_the_start(harness, monkeypatch):
    import nsfw_tui.core.watch.coverage as coverage_module

    h = harness()
    nfs = f"22 1 252:1 / / rw - ext4 /dev/vda1 rw\n50 22 0:45 / {h.inbox} rw - nfs4 srv:/x rw\n"
    monkeypatch.setattr(coverage_module, "read_mountinfo", lambda: nfs)
    w = h.start()
    (h.inbox / "landed.png").write_bytes(image_bytes(1, red=5))
    h.wait_lines(1)
    assert w.stats().polling
    (notice,) = polling_notices(h)
    assert f"it lies on the nfs4 mount {h.inbox}; polling the whole folder" in notice
    assert "other machines" in notice
    assert w.coverage.probes_ok == 0 and probes_in(h.inbox) == [], "no probe: polling at once"


# -- a real watch ---------------------------------------------------------------------------


@pytest.mark.slow
def test_w15_a_probe_that_gets_no_event_switches_the_watch_to_polling(harness):
    wait = 0.5
    h = harness(probe_wait_s=wait)
    q = h.tmp / "quarantine"
    w = h.start(observer_factory=deaf_to_the_root, quarantine=str(q))
    assert not w.stats().polling
    (h.inbox / "landed.png").write_bytes(image_bytes(1, red=5))
    decided = h.decided_at({"landed.png"}, timeout=wait + SETTLE + 10)
    assert decided, "with no event and no rescan due, only polling finds it"
    h.wait_lines(1)
    assert w.stats().polling
    (notice,) = polling_notices(h)
    assert f"native file events do not cover {h.inbox}" in notice
    assert f"no event came within {wait:g} s for a probe file" in notice
    (h.inbox / "later.png").write_bytes(image_bytes(2, red=5))
    h.wait_lines(2)
    assert [Path(d["path"]).name for d in h.lines] == ["landed.png", "later.png"]
    assert len(polling_notices(h)) == 1, "said once"
    assert probes_in(h.inbox) == [], "the probe file is removed"
    assert not q.exists() or not any(q.iterdir()), "a probe never trips the quarantine"
    assert PROBE_PREFIX not in h.log.read_text()


def test_w15_with_events_that_arrive_the_probe_passes_and_the_watch_stays_native(harness):
    h = harness()
    w = h.start()
    (h.inbox / "a.png").write_bytes(image_bytes(3))
    h.wait_lines(1)
    assert w.coverage.probes_ok >= 1 and not w.stats().polling
    assert probes_in(h.inbox) == [] and polling_notices(h) == []
    assert w.idle(), "probes do not keep the watcher busy"


@pytest.mark.skipif(not LINUX, reason="inotify (and its watch limit) is Linux's")
@pytest.mark.parametrize(
    ("budget", "said"),
    [(10, "native file events do not cover"), (0, "native file events unavailable for")],
    ids=["some-folders", "not-even-the-root"],
)
def test_w15_watches_refused_at_the_limit_switch_to_polling(harness, monkeypatch, budget, said):
    # The kernel's refusal past the limit, simulated where watchdog calls inotify_add_watch:
    # the first `budget` watches are real, every later one fails with ENOSPC, so watchdog's
    # own code drops the error for those folders as it does on a real limit (and raises it
    # for the root, which stops native events from starting).
    import watchdog.observers.inotify_c as inotify_c

    real, calls = inotify_c.inotify_add_watch, []

    def add_watch(fd, path, mask):
        calls.append(path)
        if len(calls) > budget:
            ctypes.set_errno(errno.ENOSPC)
            return -1
        return real(fd, path, mask)

    monkeypatch.setattr(inotify_c, "inotify_add_watch", add_watch)
    h = harness()
    names = [f"d{i:02d}/landed.png" for i in range(30)]
    for name in names:
        (h.inbox / name).parent.mkdir()
    w = h.start()
    assert len(calls) > budget, "the watches ran past the budget"
    landed = {}
    for i, name in enumerate(names):
        (h.inbox / name).write_bytes(image_bytes(10 + i, red=5))
        landed[name] = time.monotonic()
    decided = h.decided_at(set(names), timeout=SETTLE + 10)
    h.wait_lines(len(names))
    took = {n: decided[n] - landed[n] for n in decided}
    assert set(took) == set(names) and max(took.values()) <= SETTLE + 3.0, took
    assert w.stats().polling
    (notice,) = polling_notices(h)
    assert notice.startswith(said) and "inotify watch limit reached" in notice
    assert "sudo sysctl fs.inotify.max_user_watches=" in notice


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="inotify (and its watch limit) is Linux's")
def test_w15_past_a_real_watch_limit_in_a_user_namespace(tmp_path):
    """121 folders against a budget of 40 watches; the child lowers its own namespace's
    budget, never the host's limit (see support.watch.limited_watch)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("util-linux's unshare is not installed")
    if not os.path.exists("/proc/sys/user/max_inotify_watches"):
        pytest.skip("this kernel has no per-user-namespace inotify budget")
    folders, limit = 121, 40
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from support.watch import limited_watch\n"
        "limited_watch(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))\n"
    )
    proc = subprocess.run(
        [unshare, "-Ur", sys.executable, "-c", code, str(tmp_path), str(folders), str(limit)],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0 and proc.stderr.startswith("unshare:"):
        pytest.skip(f"no user namespace for this user here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["limit"] == limit
    took = result["took"]
    assert len(took) == folders and result["lines"] == folders, "each file decided once"
    last = f"d{folders - 1:03d}/landed.png"
    assert took[last] <= SETTLE + 3.0 and max(took.values()) <= SETTLE + 3.0, took
    assert result["polling"]
    (notice,) = [n for n in result["notices"] if n.startswith("native file events")]
    assert "(inotify watch limit reached)" in notice
    assert f"this user namespace's user.max_inotify_watches (now {limit};" in notice
    assert "fs.inotify.max_user_watches" in notice
    print(
        f"\nW15: {folders} folders, a budget of {limit} inotify watches: switched to polling; "
        f"the file in the last folder decided {took[last]:.2f} s after landing, the slowest "
        f"of {folders} {max(took.values()):.2f} s (settle {SETTLE} s)"
    )


# -- where a person reads it ----------------------------------------------------------------


@pytest.mark.slow
def test_w15_headless_says_it_polls_once_on_stderr(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    home = resolve_home(tmp_path / "home")
    prepare_home(home)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            DEAF_CLI,
            "watch",
            str(inbox),
            "--headless",
            "--home",
            str(home.root),
            "settle_s=0.3",
        ],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: queue.Queue[str] = queue.Queue()
    err: list[str] = []
    switched = threading.Event()

    def read_err() -> None:
        for line in proc.stderr:
            err.append(line)
            if line.startswith("native file events do not cover"):
                switched.set()

    threads = [
        threading.Thread(target=lambda: [out.put(x) for x in proc.stdout], daemon=True),
        threading.Thread(target=read_err, daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        assert switched.wait(60), "".join(err)
        (inbox / "landed.png").write_bytes(image_bytes(1, red=5))
        line = json.loads(out.get(timeout=30))
        assert line["path"].endswith("landed.png")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    for t in threads:
        t.join(5)
    assert proc.returncode == 0, "".join(err)
    said = [x for x in err if x.startswith("native file events do not cover")]
    assert len(said) == 1 and "polling the whole folder" in said[0], err


@pytest.mark.slow
async def test_w15_the_watch_screen_says_it_polls(tmp_path, monkeypatch):
    import nsfw_tui.core.watch.watcher as watcher_module

    monkeypatch.setattr(watcher_module, "native_observer", deaf_to_the_root)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    app = watch_app(inbox, tmp_path, probe_wait_s=0.5)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        screen = app.watch_screen
        status = screen.query_one("#watch-status", Static)
        await wait_for(pilot, lambda: "(polling)" in str(status.content))
        said = [n for n in app._notifications if str(n.message).startswith("native file events")]
        assert len(said) == 1 and "polling the whole folder" in str(said[0].message)
        Image.new("RGB", (24, 16), (10, 90, 160)).save(inbox / "landed.png")
        await wait_for(pilot, lambda: screen.table.row_count == 1)


@pytest.mark.slow
async def test_r_on_the_watch_screen_rescans_what_events_missed(tmp_path, monkeypatch):
    """With events lost and no probe to notice, `r` finds the file the observer never saw."""
    import nsfw_tui.core.watch.watcher as watcher_module

    monkeypatch.setattr(watcher_module, "native_observer", deaf_to_the_root)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    app = watch_app(inbox, tmp_path, probe_wait_s=600)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.watch_screen
        # after the start's own rescan, which would find the file without `r`
        await wait_for(
            pilot,
            lambda: (
                app.watcher is not None and app.watcher.stats().rescans >= 1 and app.watcher.idle()
            ),
        )
        Image.new("RGB", (24, 16), (10, 90, 160)).save(inbox / "missed.png")
        await pilot.pause(1.0)
        assert screen.table.row_count == 0, "the deaf observer reported nothing"
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.table.row_count == 1)
        assert screen.selected()["path"].endswith("missed.png")
