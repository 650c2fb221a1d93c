"""Whether native file events cover the watched tree: refused watches, a probe, mounts (W15)."""

# inotify needs one watch per folder, and watchdog adds them itself for a recursive watch.
# Past the user's watch limit (fs.inotify.max_user_watches) the kernel refuses a watch with
# ENOSPC, and watchdog drops that error for every folder but the root (its
# InotifyWatchGroup._add_callback), so files landing in those folders bring no event and
# wait for the next rescan, minutes later, with no warning. A file system whose changes
# never reach inotify fails the same silent way. So the watcher's inotify observer reports
# every watch refused for a folder that exists (`native_observer`), and after each rescan a
# hidden probe file is written in the root and its event awaited (`Coverage`). A probe can
# only show that this machine's own writes are reported: on a network or FUSE mount those
# are, and changes made elsewhere (another client, the host of a VM) are not. So a tree on,
# or holding, such a mount counts as not covered from the start (`remote_mounts`). Any of
# these switches the whole watch to polling (watcher.py says why not one subtree).

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..store import path_text
from .clock import Clock

PROBE_PREFIX = ".nsfw-tui-probe-"
STALE_PROBE_S = 60.0  # a probe file this old was left by a watcher that was killed
SUGGESTED_WATCHES = 524288

Refused = Callable[[str, OSError], None]  # (folder, error): a watch the kernel refused

# File systems whose changes made elsewhere never reach this machine's inotify. FUSE is
# counted whole (sshfs, rclone, s3fs, gcsfuse, Docker Desktop's shares...): it cannot be
# told which FUSE file systems are local; fuseblk (ntfs-3g, exfat on a local disk) is local.
REMOTE_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "virtiofs",
        "ceph",
        "glusterfs",
        "lustre",
        "afs",
        "gpfs",
        "beegfs",
        "vboxsf",
        "vmhgfs",
        "ncpfs",
        "coda",
        "orangefs",
        "fuse",
    }
)


def is_remote(fstype: str) -> bool:
    return fstype in REMOTE_TYPES or fstype.startswith("fuse.")


def read_mountinfo() -> str:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read()
    except OSError:
        return ""  # not Linux, or no /proc: nothing known


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/"))


def remote_mounts(root: str, mountinfo: str) -> list[tuple[str, str]]:
    """(mount point, type) of each network or FUSE mount that holds ``root`` or lies in it
    (outside hidden folders), from the text of /proc/self/mountinfo."""
    root = os.path.realpath(root)
    holder: tuple[str, str] | None = None
    inside: list[tuple[str, str]] = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        point, fstype = _unescape(fields[4]), right.split()[0]
        if root == point or root.startswith(point.rstrip("/") + "/"):
            if holder is None or len(point) >= len(holder[0]):  # later lines mount over
                holder = (point, fstype)
        elif point.startswith(root + "/") and not _hidden(point[len(root) + 1 :]):
            inside.append((point, fstype))
    mounts = ([holder] if holder else []) + inside
    return [(point, fstype) for point, fstype in mounts if is_remote(fstype)]


def native_observer(refused: Refused):
    """The platform's native observer; on Linux, watchdog's inotify observer on an inotify
    instance that calls ``refused`` for each watch the kernel refuses."""
    if not sys.platform.startswith("linux"):
        from watchdog.observers import Observer

        return Observer()
    return _reporting_inotify_observer()(refused)


_observer_class = None


def _reporting_inotify_observer():
    """watchdog's InotifyObserver built from its public parts, with a reporting InotifyFD."""
    global _observer_class
    if _observer_class is not None:
        return _observer_class
    from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver
    from watchdog.observers.inotify import InotifyEmitter
    from watchdog.observers.inotify_c import InotifyFD

    class ReportingInotifyFD(InotifyFD):
        """Every watch is added through ``add_callback``; a refusal is told, then raised."""

        def __init__(self, refused: Refused) -> None:
            super().__init__()
            self.refused = refused

        def add_callback(self, path, *args, **kwargs):
            try:
                return super().add_callback(path, *args, **kwargs)
            except OSError as exc:
                self.refused(os.fsdecode(path), exc)
                raise

    class ReportingInotifyObserver(BaseObserver):
        def __init__(self, refused: Refused, *, timeout: float = DEFAULT_OBSERVER_TIMEOUT):
            self._inotify_fd = ReportingInotifyFD(refused)
            self._inotify_fd.start()
            super().__init__(InotifyEmitter, timeout=timeout, inotify_fd=self._inotify_fd)

        def on_thread_stop(self) -> None:
            super().on_thread_stop()
            self._inotify_fd.stop()
            self._inotify_fd.join()

    _observer_class = ReportingInotifyObserver
    return _observer_class


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def limit_advice(exc: OSError) -> str:
    """A sentence naming the limit to raise when ``exc`` is an inotify limit; else ""."""
    if exc.errno == errno.ENOSPC:
        name, floor = "fs.inotify.max_user_watches", SUGGESTED_WATCHES
    elif exc.errno == errno.EMFILE:
        name, floor = "fs.inotify.max_user_instances", 1024
    else:
        return ""
    system = _read_int("/proc/sys/" + name.replace(".", "/"))
    # Each user namespace (a container, `unshare -U`) has a budget of its own as well,
    # user.max_inotify_*; where it is the lower one, it is the one to raise.
    ns_name = "user.max_inotify_" + name.rsplit("_", 1)[1]
    ns = _read_int("/proc/sys/" + ns_name.replace(".", "/"))
    if ns is not None and system is not None and ns < system:
        suggest = max(floor, 2 * ns)
        return (
            f"The limit here is this user namespace's {ns_name} (now {ns}; the system's "
            f"{name} is {system}): to watch with native events, raise it where the namespace "
            f"is made (sysctl {ns_name}={suggest}) and restart the watch."
        )
    suggest = max(floor, 2 * (system or 0))
    now = f" (now {system})" if system is not None else ""
    return (
        f"The limit is {name}{now}: to watch with native events, raise it and restart the "
        f"watch: sudo sysctl {name}={suggest} (put {name}={suggest} in "
        "/etc/sysctl.d/60-inotify.conf to keep it)."
    )


def refusal_text(folder: str, exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        why = "inotify watch limit reached"
    elif exc.errno == errno.EMFILE:
        why = "inotify instance limit reached"
    else:
        why = exc.strerror or str(exc)
    return f"the kernel refused a watch for {path_text(folder)} ({why})"


@dataclass
class _Probe:
    path: str
    deadline: float  # monotonic
    epoch: object  # what the watcher's event losses were when it was written
    arrived: bool = False


class Coverage:
    """What is known about native events reaching the watcher: refused watches and probes.

    ``refused`` is called from watchdog's threads, ``saw`` from the observer's; ``probe``,
    ``failure`` and ``close`` from the settle thread.
    """

    def __init__(
        self,
        root: str,
        *,
        clock: Clock,
        wait_s: float,
        notice: Callable[[str], None],
        wake: Callable[[], None] = lambda: None,
        mountinfo: Callable[[], str] | None = None,
    ) -> None:
        self.root = root
        self.mountinfo = mountinfo  # None: read_mountinfo (looked up when used)
        self._mounts: list[tuple[str, str]] | None = None
        self.clock = clock
        self.wait_s = wait_s
        self.notice = notice
        self.wake = wake
        self._lock = threading.Lock()
        self._refused: tuple[str, OSError] | None = None
        self._probe: _Probe | None = None
        self._seq = itertools.count(1)
        self._swept = False
        self._cannot_write = False
        self.probes_ok = 0  # probes whose event arrived (tests wait on it)

    # -- what watchdog's threads report -----------------------------------------------------

    def refused(self, folder: str, exc: OSError) -> None:
        """A watch was refused; it matters only for a folder that is still there."""
        if not os.path.isdir(folder):
            return  # removed while watches were being added: nothing to watch
        with self._lock:
            if self._refused is None:
                self._refused = (folder, exc)
        self.wake()

    def owns(self, path: str) -> bool:
        """A probe file (this watcher's or another's): never a candidate, never a row."""
        return os.path.dirname(path) == self.root and os.path.basename(path).startswith(
            PROBE_PREFIX
        )

    def saw(self, path: str) -> bool:
        """An event for ``path``; whether it was a probe's (then it goes no further)."""
        if not self.owns(path):
            return False
        with self._lock:
            if self._probe is not None and self._probe.path == path:
                self._probe.arrived = True
        return True

    # -- the settle thread ----------------------------------------------------------------

    def probe(self, epoch: object) -> None:
        """Write a probe file in the root, unless one is out already."""
        with self._lock:
            if self._probe is not None:
                return
        if not self._swept:
            self._swept = True
            self._sweep()
        path = os.path.join(self.root, f"{PROBE_PREFIX}{os.getpid()}-{next(self._seq)}")
        probe = _Probe(path, float("inf"), epoch)
        with self._lock:  # before the write: its events may be dispatched before it returns
            self._probe = probe
        try:
            with open(path, "xb") as fh:
                fh.write(b"nsfw-tui watch: a probe for file events; safe to delete\n")
        except OSError as exc:
            with self._lock:
                self._probe = None
            if not self._cannot_write:
                self._cannot_write = True
                self.notice(
                    f"cannot write a probe file in {path_text(self.root)} "
                    f"({exc.strerror or exc}): native file events are not checked there"
                )
            return
        probe.deadline = self.clock.monotonic() + self.wait_s

    def failure(self, epoch: object) -> tuple[str, str] | None:
        """Why native events do not cover the tree and what would fix it, once known.

        A probe whose event did not come while events were lost for another reason (an
        overflow, an observer restart: ``epoch`` changed) is written again instead.
        """
        if self._mounts is None:  # once, at the first look (on the settle thread)
            self._mounts = remote_mounts(self.root, (self.mountinfo or read_mountinfo)())
        if self._mounts:
            point, fstype = self._mounts[0]
            real = os.path.realpath(self.root)
            on = real == point or real.startswith(point.rstrip("/") + "/")
            return (
                f"it {'lies on' if on else 'holds'} the {fstype} mount {path_text(point)}",
                "Changes made there by other machines (or by the host of a virtual machine "
                "or container) never reach inotify; polling sees them.",
            )
        with self._lock:
            refused, probe = self._refused, self._probe
        if refused is not None:
            folder, exc = refused
            return refusal_text(folder, exc), limit_advice(exc)
        if probe is None:
            return None
        if probe.arrived:
            self.probes_ok += 1
            self._end_probe()
            return None
        if self.clock.monotonic() < probe.deadline:
            return None
        self._end_probe()
        if probe.epoch != epoch:
            self.probe(epoch)
            return None
        why = (
            f"no event came within {self.wait_s:g} s for a probe file written in "
            f"{path_text(self.root)}"
        )
        return why, (
            "A network or FUSE mount, or a file system that does not report changes, does this."
        )

    def close(self) -> None:
        """Remove a probe still out (the watch stops, or polls from now on)."""
        self._end_probe()

    def _end_probe(self) -> None:
        with self._lock:
            probe, self._probe = self._probe, None
        if probe is not None:
            with contextlib.suppress(OSError):
                os.unlink(probe.path)

    def _sweep(self) -> None:
        """Remove probe files a killed watcher left behind."""
        now = self.clock.time()
        with contextlib.suppress(OSError), os.scandir(self.root) as it:
            for entry in it:
                if entry.name.startswith(PROBE_PREFIX):
                    with contextlib.suppress(OSError):
                        if now - entry.stat(follow_symlinks=False).st_mtime > STALE_PROBE_S:
                            os.unlink(entry.path)
