"""The watcher's settle gate, retries and rescan timing on a hand-moved clock (W2-W5)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from watchdog.events import FileCreatedEvent, FileDeletedEvent, FileMovedEvent

from nsfw_tui.core.watch import Watcher, WatchOptions
from nsfw_tui.core.watch.clock import ManualClock
from nsfw_tui.core.watch.decide import Decider, Ledger, Outcome, Rules, Tally
from nsfw_tui.core.watch.observer import OverflowHook
from nsfw_tui.core.watch.scope import Scope
from nsfw_tui.core.watch.settle import RETRYABLE, SettleGate

SETTLE = 2.0
LIMIT = 10.0  # never_settles_timeout_s
GRACE = 5.0  # undecodable_grace_s: shorter than LIMIT, so a test tells which one applied
P = "/inbox/a.png"


class Files(dict):
    """A fake folder: path -> (size, mtime_ns), written at the clock's wall time."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock

    def write(self, path: str, size: int, age: float = 0.0) -> tuple[int, int]:
        self[path] = (size, int((self.clock.time() - age) * 1e9))
        return self[path]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def files(clock) -> Files:
    return Files(clock)


@pytest.fixture
def gate(clock, files) -> SettleGate:
    return SettleGate(
        settle_s=SETTLE, never_settles_s=LIMIT, grace_s=GRACE, clock=clock, key_of=files.get
    )


def settled_after(gate: SettleGate, clock: ManualClock, seconds: float) -> int:
    clock.advance(seconds)
    return gate.promote()


def take_one(gate: SettleGate):
    batch, _, more = gate.take(10)
    assert len(batch) == 1 and not more
    return batch[0]


# -- settling -----------------------------------------------------------------------------


def test_a_stable_file_settles_after_settle_s_and_not_before(gate, clock, files):
    key = files.write(P, 100)
    gate.hint(P)  # an event: looked at now, and the wait starts from what it shows
    assert gate.promote() == 0
    assert settled_after(gate, clock, SETTLE - 0.5) == 0
    assert settled_after(gate, clock, 0.5) == 1
    s = take_one(gate)
    assert (s.path, s.key, s.final, s.error) == (P, key, False, None)
    assert gate.pending() == 1 and gate.tracks(P), "in flight until the scoring side is done"
    assert gate.finish([P]) == [P]
    assert gate.idle() and gate.pending() == 0


def test_a_rescan_hint_with_a_key_waits_settle_s_from_the_hint(gate, clock, files):
    key = files.write(P, 100, age=60)  # found by a rescan, long unchanged
    gate.hint(P, key)
    assert gate.promote() == 0, "an old mtime does not skip the wait: the walk saw it once"
    assert settled_after(gate, clock, SETTLE) == 1
    assert take_one(gate).key == key


def test_a_file_that_keeps_changing_is_an_error_only_after_the_never_settles_timeout(
    gate, clock, files
):
    size = 1
    files.write(P, size)
    gate.hint(P)
    elapsed = 0.0
    while not gate.promote():
        assert elapsed < LIMIT + SETTLE, "never handed over"
        size += 1
        files.write(P, size)  # grows every half second: never stable for SETTLE
        clock.advance(0.5)
        elapsed += 0.5
    assert elapsed == LIMIT, "looked at every SETTLE s after each change, until the limit"
    s = take_one(gate)
    assert s.error == ("unsettled", f"still changing after {LIMIT:g} s"), "decided unread"
    assert s.key == files[P]


def test_an_event_for_a_changed_file_restarts_the_wait(gate, clock, files):
    first = files.write(P, 100)
    gate.hint(P, first)  # a rescan saw it at t = 0
    clock.advance(1.5)
    second = files.write(P, 200)
    gate.hint(P)  # and an event at t = 1.5: look now
    assert gate.promote() == 0
    assert settled_after(gate, clock, 0.5) == 0, "t = 2 was the old schedule; it changed since"
    clock.advance(1.0)
    gate.hint(P)  # a close event at t = 3, no change: only 1.5 s since the change
    assert gate.promote() == 0
    assert settled_after(gate, clock, 0.5) == 1, "SETTLE s after the change was seen"
    assert take_one(gate).key == second


def test_an_event_without_a_change_does_not_delay_settling(gate, clock, files):
    files.write(P, 100)
    gate.hint(P)
    gate.promote()
    clock.advance(1.0)
    gate.hint(P)  # touched, not changed (an attribute or close event)
    assert gate.promote() == 0
    assert settled_after(gate, clock, 1.0) == 1


def test_a_second_rescan_hint_does_not_move_a_waiting_candidate(gate, clock, files):
    key = files.write(P, 100)
    gate.hint(P, key)
    clock.advance(1.5)
    gate.hint(P, key)
    assert settled_after(gate, clock, 0.5) == 1


def test_a_file_deleted_before_it_settles_is_dropped_without_a_decision(gate, clock, files):
    files.write(P, 100)
    gate.hint(P)
    gate.promote()
    del files[P]
    assert settled_after(gate, clock, SETTLE) == 0
    assert gate.idle() and gate.take(10) == ([], set(), False)


def test_paths_that_went_away_are_handed_over_once(gate, clock, files):
    files.write(P, 100)
    gate.hint(P)
    gate.discard(P, gone=True)
    assert not gate.tracks(P)
    assert gate.take(10) == ([], {P}, False)
    assert gate.take(10) == ([], set(), False)


def test_take_hands_over_at_most_the_batch_limit(gate, clock, files):
    paths = [f"/inbox/{i}.png" for i in range(5)]
    for p in paths:
        files.write(p, 10)
        gate.hint(p)
    gate.promote()
    assert settled_after(gate, clock, SETTLE) == 5
    first, _, more = gate.take(3)
    assert len(first) == 3 and more
    rest, _, more = gate.take(3)
    assert len(rest) == 2 and not more
    assert {s.path for s in first + rest} == set(paths)


# -- retries of decode failures ----------------------------------------------------------


def test_a_young_truncated_file_is_retried_then_decided_once_final(gate, clock, files):
    key = files.write(P, 100)  # written now: young
    gate.hint(P)
    gate.promote()
    settled_after(gate, clock, SETTLE)
    s = take_one(gate)
    assert gate.defer(s, key, "truncated"), "a partial upload fails like this: wait"
    assert gate.tracks(P) and gate.pending() == 1
    waited = SETTLE
    while not gate.promote():
        assert waited < 2 * LIMIT, "never became final"
        clock.advance(SETTLE / 4)
        waited += SETTLE / 4
    assert waited == GRACE, "final once the file has been unchanged for the grace"
    again = take_one(gate)
    assert again.final and again.key == key
    assert not gate.defer(again, key, "truncated"), "final: decided as an error now"


def test_a_final_retry_is_decided_even_if_the_wall_clock_was_set_back(gate, clock, files):
    key = files.write(P, 100)
    gate.hint(P, key)
    settled_after(gate, clock, SETTLE)
    assert gate.defer(take_one(gate), key, "truncated")
    clock.advance(GRACE - SETTLE - 1.0)
    clock.set_time(clock.time() - 5.0)  # an NTP step: the file looks young again
    assert settled_after(gate, clock, 1.0) == 1, "the monotonic clock says the time is up"
    again = take_one(gate)
    assert again.final and gate.young(key)
    assert not gate.defer(again, key, "truncated"), "final means decided, whatever the age"


def test_a_retried_file_that_grows_settles_again_and_is_scored_afresh(gate, clock, files):
    key = files.write(P, 100)
    gate.hint(P, key)
    settled_after(gate, clock, SETTLE)
    assert gate.defer(take_one(gate), key, "truncated")
    clock.advance(1.0)
    whole = files.write(P, 250)  # the rest of the upload arrives
    assert settled_after(gate, clock, 1.0) == 0, "changed: the settle wait starts again"
    assert settled_after(gate, clock, SETTLE) == 1
    s = take_one(gate)
    assert (s.key, s.final) == (whole, False)


def test_a_retry_waits_only_for_what_is_left_of_the_grace(gate, clock, files):
    key = files.write(P, 100, age=GRACE - 1.0)  # young for one more second
    gate.hint(P, key)
    settled_after(gate, clock, 0.5)
    assert settled_after(gate, clock, SETTLE) == 1
    # Now GRACE - 1 + 2.5 s old: past the grace before the first try.
    assert not gate.defer(take_one(gate), key, "truncated")
    other = "/inbox/b.png"
    key = files.write(other, 100, age=GRACE - 1.0)
    s = SimpleNamespace(path=other, key=key, final=False, error=None)
    assert gate.defer(s, key, "empty")
    assert settled_after(gate, clock, 0.5) == 0
    assert settled_after(gate, clock, 0.5) == 1 and take_one(gate).final


def final_after(gate: SettleGate, clock: ManualClock, step: float = 0.25) -> float:
    """Move the clock until the gate hands a deferred file back; the seconds that took."""
    waited = 0.0
    while not gate.promote():
        assert waited < 2 * LIMIT, "never handed back"
        clock.advance(step)
        waited += step
    return waited


@pytest.mark.parametrize("kind", sorted(RETRYABLE))
def test_a_settled_file_that_never_decodes_is_decided_after_the_grace_not_the_timeout(
    gate, clock, files, kind
):
    key = files.write(P, 100)  # a text file named .jpg, or half a JPEG, that stays as it is
    gate.hint(P)
    gate.promote()
    settled_after(gate, clock, SETTLE)
    assert gate.defer(take_one(gate), key, kind), "settled, but it may be a stalled upload"
    assert not gate.idle()
    assert SETTLE + final_after(gate, clock) == GRACE, "unchanged for the grace: decided"
    again = take_one(gate)
    assert again.final and again.key == key and again.error is None
    assert not gate.defer(again, key, kind), "decided as it is: an error"
    assert gate.finish([P]) == [P] and gate.idle()


def test_an_undecodable_file_found_at_start_waits_only_for_the_rest_of_the_grace(
    gate, clock, files
):
    key = files.write(P, 100, age=1.0)  # written a second before the watch started
    gate.hint(P, key)  # the catch-up rescan found it
    settled_after(gate, clock, SETTLE)
    assert gate.defer(take_one(gate), key, "unidentified")
    assert SETTLE + final_after(gate, clock) == GRACE - 1.0
    assert take_one(gate).final


def test_an_undecodable_file_that_changes_after_its_error_is_decided_again(gate, clock, files):
    first = files.write(P, 100)
    gate.hint(P)
    gate.promote()
    settled_after(gate, clock, SETTLE)
    assert gate.defer(take_one(gate), first, "truncated")
    final_after(gate, clock)
    assert take_one(gate).final
    gate.finish([P])  # decided: an error
    clock.advance(30.0)
    second = files.write(P, 300)  # rewritten later (the upload was resumed, or replaced)
    gate.hint(P)  # its event
    gate.promote()
    assert settled_after(gate, clock, SETTLE) == 1
    s = take_one(gate)
    assert (s.key, s.final) == (second, False), "new content: read and decided afresh"
    assert gate.defer(s, second, "truncated"), "and given a grace of its own"
    assert SETTLE + final_after(gate, clock) == GRACE
    assert take_one(gate).key == second


def test_an_mtime_in_the_future_waits_the_grace_and_no_longer(gate, clock, files):
    key = files.write(P, 100, age=-3600.0)  # a skewed clock on the writer's side
    gate.hint(P, key)
    settled_after(gate, clock, SETTLE)
    assert gate.grace_left(key) == GRACE
    assert gate.defer(take_one(gate), key, "empty")
    assert final_after(gate, clock) == GRACE


def test_old_files_and_lasting_errors_are_decided_at_once(gate, clock, files):
    old = files.write(P, 100, age=GRACE + 1)
    young = files.write("/inbox/b.png", 100)
    s_old = SimpleNamespace(path=P, key=old, final=False, error=None)
    s_young = SimpleNamespace(path="/inbox/b.png", key=young, final=False, error=None)
    assert not gate.defer(s_old, old, "truncated")
    assert not gate.defer(s_young, young, "corrupt"), "not how a partial upload fails"
    assert not gate.defer(s_young, young, None), "decoded fine"
    assert gate.defer(s_young, young, "unidentified")


def test_young_is_measured_from_the_mtime_on_the_wall_clock(gate, clock, files):
    key = files.write(P, 1, age=GRACE - 0.5)
    assert gate.young(key)
    clock.advance(0.5)
    assert not gate.young(key), "unchanged for the whole grace: no longer young"


# -- which names wait, events, overflow and rescans ----------------------------------------


def test_temporary_hidden_quarantined_and_foreign_names_are_never_candidates():
    scope = Scope("/w", quarantine="/w/q")
    assert scope.wanted("/w/a.png") and scope.wanted("/w/sub/a.JPG")
    for path in [
        "/w/a.png.part",
        "/w/a.png.crdownload",
        "/w/a.png.tmp",
        "/w/a.png~",
        "/w/.a.png",
        "/w/.cache/a.png",
        "/w/q/a.png",
        "/w/notes.txt",
        "/elsewhere/a.png",
        "/w",
    ]:
        assert not scope.wanted(path), path
    assert scope.wanted_dir("/w/sub") and not scope.wanted_dir("/w/.git")
    assert not scope.wanted_dir("/w/q/x") and not scope.wanted_dir("/other")
    assert Scope("/w", pattern="*.TXT").wanted("/w/notes.txt")


def watcher(tmp_path, clock: ManualClock, **options) -> Watcher:
    """A watcher that is never started: its parts, wired as in a real watch."""
    opts = WatchOptions(settle_s=SETTLE, never_settles_timeout_s=LIMIT, **options)
    scorer = SimpleNamespace(id="fake")
    return Watcher(
        tmp_path, tmp_path / "store.db", scorer, threshold=0.5, options=opts, clock=clock
    )


def test_a_part_file_waits_for_its_final_name(tmp_path, clock):
    w = watcher(tmp_path, clock)
    part, final = str(tmp_path / "up.png.part"), str(tmp_path / "up.png")
    w._handler.dispatch(FileCreatedEvent(part))
    assert not w.gate.tracks(part) and w.gate.idle()
    w._handler.dispatch(FileMovedEvent(part, final))
    assert w.gate.tracks(final) and not w.gate.tracks(part)
    assert w.gate.take(10)[1] == {part}, "the old name's row, if any, goes"
    w._handler.dispatch(FileDeletedEvent(final))
    assert not w.gate.tracks(final)


def test_an_overflow_warning_asks_for_a_rescan_and_a_reconcile_note_does_not(tmp_path, clock):
    w = watcher(tmp_path, clock)
    hook = OverflowHook(w._on_overflow)
    for text in ["Inotify queue overflowed", "Inotify queue overflow: reconciling"]:
        hook.emit(logging.makeLogRecord({"msg": text, "levelno": logging.WARNING}))
    assert w.stats().overflows == 1
    assert w.rescans.due() == "overflow" and w.rescans.due() is None


def test_rescans_are_asked_for_or_come_every_interval(tmp_path, clock):
    w = watcher(tmp_path, clock, rescan_interval_s=300.0)
    w.rescans.request("catch-up")
    w.request_rescan("requested")  # keeps the earlier reason
    assert w.rescans.due() == "catch-up"
    assert w.rescans.due() is None
    clock.advance(299.5)
    assert w.rescans.due() is None
    clock.advance(0.5)
    assert w.rescans.due() == "periodic"


# -- what a decision tells ------------------------------------------------------------------


def test_a_line_is_dated_by_the_clock_and_the_same_content_is_told_once(clock):
    lines: list[dict] = []
    tally = Tally(clock)
    decider = Decider(
        Rules(model="fake", threshold=0.5, root="/inbox"),
        ledger=Ledger(),
        tally=tally,
        clock=clock,
        on_decision=lines.append,
        notice=lambda text: None,
    )
    o = Outcome(P, (10, 1), sha256="ab" * 32, probability=0.75)
    decider.decide(None, o)  # no quarantine: the store is not needed
    clock.advance(1.0)
    decider.decide(None, Outcome(P, (10, 2), sha256="ab" * 32, probability=0.75))  # touched
    assert len(lines) == 1
    line = lines[0]
    assert line["time"] == "2023-11-14T22:13:20.000Z"  # ManualClock's wall time
    assert (line["decision"], line["source"], line["action"]) == ("nsfw", "model", "none")
    assert line["reason"] == "probability 0.7500 >= threshold 0.5"
    stats = tally.snapshot()
    assert (stats.seen, stats.nsfw, stats.rate) == (1, 1, 1.0)
    clock.advance(10.0)
    assert tally.snapshot().rate == 0.0, "the rate covers the last ten seconds"
