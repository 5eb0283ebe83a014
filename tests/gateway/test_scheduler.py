"""The scheduler: the periodic commands due at a time, from the time and the state alone."""
from __future__ import annotations

import datetime

from clearing.messages import RollListing, Settle
from engine.contracts import date_to_ns
from gateway.config import ScheduleConfig
from gateway.core.scheduler import Scheduler, at, next_daily
from inproc import InProcess
from live import AS_OF

HOUR = 3600 * 10**9
DAY = 24 * HOUR
NOON = date_to_ns(AS_OF) + 12 * HOUR
QUARTERS = """
[[product]]
gpu_class = "H100"
reference_price = "2.000"
months = 3
quarters = 2
"""


def kinds(commands) -> list[str]:
    return [type(c).__name__ for c in commands]


def test_next_daily_is_after_now():
    four = datetime.time(16, 0)
    assert next_daily(NOON, four) == at(AS_OF, four) == NOON + 4 * HOUR
    assert next_daily(NOON + 4 * HOUR, four) == NOON + 28 * HOUR     # at it: the next day


def test_a_mark_step_while_one_could_change_anything_and_each_daily_command_once(tmp_path):
    """The commands are not run here, so the venue stays as new: a mark step is due each
    time (commands ran since the last one: the funding), a Timer never (no order can
    expire, no contract reaches its last trading time)."""
    venue = InProcess(tmp_path / "data").venue
    scheduler = Scheduler(ScheduleConfig(), venue, NOON)
    # A new venue has not rolled its listing today: that runs at once, before the mark step.
    assert kinds(scheduler.commands(NOON + 1)) == ["RollListing", "MarkStep"]
    assert kinds(scheduler.commands(NOON + 2)) == ["MarkStep"]
    fixing = scheduler.commands(NOON + 4 * HOUR)
    assert kinds(fixing) == ["MarkStep", "FixIndex"]
    assert all(c.ts_ns == NOON + 4 * HOUR for c in fixing)      # stamped with the time asked
    assert kinds(scheduler.commands(NOON + 4 * HOUR + 1)) == ["MarkStep"]
    # A stall of three days: each daily command runs once, then is due the next day.
    late = scheduler.commands(NOON + 3 * DAY + 5 * HOUR)
    assert kinds(late) == ["RollListing", "MarkStep", "FixIndex", "Settle"]
    assert kinds(scheduler.commands(NOON + 3 * DAY + 6 * HOUR)) == ["MarkStep"]
    assert kinds(scheduler.commands(NOON + 4 * DAY + 4 * HOUR)) == \
        ["RollListing", "MarkStep", "FixIndex"]                    # past the next midnight


def test_a_start_after_the_time_runs_what_the_state_shows_has_not_run_today(tmp_path):
    venue = InProcess(tmp_path / "data")
    evening = NOON + 5 * HOUR           # after 16:00 and 16:30
    started = Scheduler(ScheduleConfig(), venue.venue, evening)
    assert kinds(started.commands(evening)) == \
        ["RollListing", "MarkStep", "FixIndex", "Settle"]
    # Once the state shows today's listing and settlement, a restart does not run them again.
    venue.core.submit(RollListing(ts_ns=evening))
    venue.core.submit(Settle(ts_ns=evening))
    again = Scheduler(ScheduleConfig(), venue.venue, evening + 1)
    assert kinds(again.commands(evening + 1)) == ["MarkStep", "FixIndex"]
    assert kinds(again.commands(evening + DAY)) == \
        ["RollListing", "MarkStep", "FixIndex", "Settle"]


def test_a_quarter_due_to_cascade_brings_the_listing_step_forward(tmp_path):
    """At a listing time other than 00:00, a quarter reaching its last trading time (00:00)
    still cascades at once: nothing is marked or settled past it uncascaded."""
    venue = InProcess(tmp_path / "data", QUARTERS)
    house = venue.venue.house
    quarter = next(i for i in house.instruments.values() if i.kind == "quarter")
    schedule = ScheduleConfig(listing="06:00")
    before = quarter.last_trading_ns - HOUR
    venue.core.submit(RollListing(ts_ns=before))
    scheduler = Scheduler(schedule, venue.venue, before)
    assert "RollListing" not in kinds(scheduler.commands(before))
    due = scheduler.commands(quarter.last_trading_ns)
    assert kinds(due)[:3] == ["Timer", "RollListing", "MarkStep"]
    for command in due:
        venue.core.submit(command)
    assert quarter.symbol not in house.instruments          # cascaded, settled, delisted
    assert "RollListing" not in kinds(scheduler.commands(quarter.last_trading_ns + 1))
