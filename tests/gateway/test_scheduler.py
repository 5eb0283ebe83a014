"""The scheduler: the periodic commands due at a time, from the time and the state alone."""
from __future__ import annotations

import datetime

from clearing.messages import Settle
from engine.contracts import date_to_ns
from gateway.config import ScheduleConfig
from gateway.core.scheduler import Scheduler, at, next_daily
from inproc import InProcess
from live import AS_OF

HOUR = 3600 * 10**9
DAY = 24 * HOUR
NOON = date_to_ns(AS_OF) + 12 * HOUR


def kinds(commands) -> list[str]:
    return [type(c).__name__ for c in commands]


def test_next_daily_is_after_now():
    four = datetime.time(16, 0)
    assert next_daily(NOON, four) == at(AS_OF, four) == NOON + 4 * HOUR
    assert next_daily(NOON + 4 * HOUR, four) == NOON + 28 * HOUR     # at it: the next day


def test_every_interval_a_timer_and_a_mark_step_and_each_daily_command_once(tmp_path):
    house = InProcess(tmp_path / "data").venue.house
    scheduler = Scheduler(ScheduleConfig(), house, NOON)
    assert kinds(scheduler.commands(NOON + 1)) == ["Timer", "MarkStep"]
    fixing = scheduler.commands(NOON + 4 * HOUR)
    assert kinds(fixing) == ["Timer", "MarkStep", "FixIndex"]
    assert all(c.ts_ns == NOON + 4 * HOUR for c in fixing)      # stamped with the time asked
    assert kinds(scheduler.commands(NOON + 4 * HOUR + 1)) == ["Timer", "MarkStep"]
    # A stall of three days: each daily command runs once, then is due the next day.
    late = scheduler.commands(NOON + 3 * DAY + 5 * HOUR)
    assert kinds(late) == ["Timer", "MarkStep", "FixIndex", "Settle"]
    assert kinds(scheduler.commands(NOON + 3 * DAY + 6 * HOUR)) == ["Timer", "MarkStep"]
    assert kinds(scheduler.commands(NOON + 4 * DAY + 4 * HOUR)) == \
        ["Timer", "MarkStep", "FixIndex"]


def test_a_start_after_the_time_runs_what_the_state_shows_has_not_run_today(tmp_path):
    venue = InProcess(tmp_path / "data")
    evening = NOON + 5 * HOUR           # after 16:00 and 16:30
    started = Scheduler(ScheduleConfig(), venue.venue.house, evening)
    assert kinds(started.commands(evening)) == ["Timer", "MarkStep", "FixIndex", "Settle"]
    # Once the state shows today's settlement, a restart does not settle again.
    venue.core.submit(Settle(ts_ns=evening))
    again = Scheduler(ScheduleConfig(), venue.venue.house, evening + 1)
    assert kinds(again.commands(evening + 1)) == ["Timer", "MarkStep", "FixIndex"]
    assert kinds(again.commands(evening + DAY)) == ["Timer", "MarkStep", "FixIndex", "Settle"]
