"""The scheduler: which periodic commands are due, as a function of time and state.

Time reaches the engine when nobody trades (GTD expiry, last trading time:
``Timer``), clearing takes a mark step every interval (``MarkStep``), and the
daily listing step, fixing and settlement run at their configured UTC times; the
listing step also runs as soon as a quarter or year is due to cascade. Each is a
command like any other, stamped and journaled; the adapter only asks, every
interval, what is due now. A Timer or a mark step that could change nothing is
left out (``Venue.ticks_due``), so an idle market journals nothing but its
daily commands and the steps that follow them.
"""
from __future__ import annotations

import datetime

from clearing.messages import FixIndex, MarkStep, RollListing, Settle
from engine.contracts import date_to_ns, utc_day
from engine.messages import Timer

NS_PER_DAY = 86_400 * 10**9


def at(day: datetime.date, time_of_day: datetime.time) -> int:
    """``time_of_day`` (UTC) on ``day``, ns since the epoch."""
    return date_to_ns(day) + (time_of_day.hour * 3600 + time_of_day.minute * 60
                              + time_of_day.second) * 10**9


def next_daily(now: int, time_of_day: datetime.time) -> int:
    """The next ``time_of_day`` (UTC) after ``now``, ns."""
    moment = at(utc_day(now), time_of_day)
    return moment if moment > now else moment + NS_PER_DAY


class Scheduler:
    """The periodic commands of a venue.

    Args:
        schedule: The config's [schedule] (times of the fixing and the settlement).
        venue: Its state says whether today's daily commands ran, and whether a Timer or
            a mark step could change anything.
        now: The venue's time when the scheduler starts, ns.
    """

    def __init__(self, schedule, venue, now: int) -> None:
        self.venue = venue
        self.house = house = venue.house
        self.times = {RollListing: schedule.time_of("listing"),
                      FixIndex: schedule.time_of("fixing"),
                      Settle: schedule.time_of("settlement")}
        self.due = {command: self._first_due(command, time_of_day, house, now)
                    for command, time_of_day in self.times.items()}

    @staticmethod
    def _first_due(command, time_of_day: datetime.time, house, now: int) -> int:
        """Now, if today's time has passed and the state (recovered after a stop) shows the
        command has not run today; else its next time."""
        today = utc_day(now)
        if command is FixIndex:
            done = all(i.fixings and i.fixings[-1].date == today for i in house.index.values())
        elif command is RollListing:
            done = house.listed_on == today
        else:
            done = house.settled_on == today
        return now if now >= at(today, time_of_day) and not done \
            else next_daily(now, time_of_day)

    def commands(self, now: int) -> list:
        """The commands due at ``now``, stamped with it: a Timer and a MarkStep if either
        could change anything, and a daily command once its time has come (once, even
        after a stall of days). The listing step goes before the mark step, so nothing is
        marked past a cascade."""
        timer, mark = self.venue.ticks_due(now)
        out = [Timer(ts_ns=now)] if timer else []
        daily = []
        for command, due in self.due.items():
            if now >= due or (command is RollListing and self.house.cascade_due(now)):
                self.due[command] = next_daily(now, self.times[command])
                if command is RollListing:       # it changes the contracts: a step follows
                    out.append(command(ts_ns=now))
                    mark = True
                else:
                    daily.append(command(ts_ns=now))
        if mark:
            out.append(MarkStep(ts_ns=now))
        return out + daily
