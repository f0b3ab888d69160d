"""How often a log follower polls: interactive ones fast while a quiet job is young; all settle at max_interval."""

from __future__ import annotations

import time

from pollinator.run.follow import FIRST_INTERVAL, INTERACTIVE, MAX_INTERVAL, MIN_INTERVAL, _Pacing


def aged(pacing: _Pacing, seconds: float) -> _Pacing:
    pacing.started = time.monotonic() - seconds
    return pacing


def test_a_young_quiet_job_is_polled_at_the_first_interval():
    pacing = _Pacing(300.0, **INTERACTIVE)
    pacing.got_lines(0)
    assert pacing.interval == FIRST_INTERVAL < MIN_INTERVAL


def test_the_quiet_wait_is_capped_at_a_tenth_of_the_age():
    pacing = aged(_Pacing(300.0, **INTERACTIVE), 2.0)
    for _ in range(20):
        pacing.got_lines(0)
    assert abs(pacing.interval - 0.2) < 0.01  # not MAX_INTERVAL yet: the job is 2 s old


def test_an_old_quiet_job_settles_at_max_interval_and_lines_reset_to_min():
    pacing = aged(_Pacing(300.0, **INTERACTIVE), 60.0)
    for _ in range(20):
        pacing.got_lines(0)
    assert pacing.interval == MAX_INTERVAL
    pacing.got_lines(3)
    assert pacing.interval == MIN_INTERVAL


def test_library_followers_keep_plain_growth():
    pacing = _Pacing(300.0, max_interval=5.0)
    pacing.got_lines(0)
    assert pacing.interval == MIN_INTERVAL * 1.5
    for _ in range(30):
        pacing.got_lines(0)
    assert pacing.interval == 5.0
