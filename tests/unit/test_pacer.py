"""control.Pacer against a fake clock: who is a straggler, and when it skips."""

from __future__ import annotations

import pytest

from nosync.run import control
from nosync.run.control import Pacer


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    now = [100.0]
    monkeypatch.setattr(control.time, "perf_counter", lambda: now[0])
    return now


def test_the_pace_is_the_median_so_a_few_stretched_steps_do_not_count() -> None:
    pacer = Pacer()
    for seconds in [0.01] * 8 + [0.5, 0.9]:  # two steps descheduled by the machine
        pacer.timed(seconds)
    assert pacer.busy_pace() == pytest.approx(0.01)
    assert pacer.busy_pace() == float("inf")  # nothing trained since the last vote


def test_a_rank_is_a_straggler_only_when_slower_at_two_votes_in_a_row(clock) -> None:
    pacer = Pacer()
    pacer.agreed(step=10, ended=clock[0], own=0.03, fastest=0.01)
    assert not pacer.straggler  # one slow interval may be noise
    pacer.agreed(step=20, ended=clock[0], own=0.03, fastest=0.01)
    assert pacer.straggler
    pacer.agreed(step=30, ended=clock[0], own=0.012, fastest=0.01)  # within 1.3x: caught up
    assert not pacer.straggler


def test_a_straggler_skips_while_it_lags_the_projected_fastest_step(clock) -> None:
    pacer = Pacer()
    for step in (10, 20):
        pacer.agreed(step=step, ended=clock[0], own=0.03, fastest=0.01)
    clock[0] += 0.05  # the fastest rank is now at about step 25
    assert pacer.behind(21) and pacer.behind(22)
    assert not pacer.behind(23)  # within 1 + SKIP_SLACK steps
    fast = Pacer()
    for step in (10, 20):
        fast.agreed(step=step, ended=clock[0], own=0.01, fastest=0.01)
    clock[0] += 1.0
    assert not fast.behind(20)  # the fastest rank never skips
