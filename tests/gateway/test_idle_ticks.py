"""Idle ticks: a Timer or a mark step that could change nothing is not run or journaled.

Leaving one out is sound only if running it would have changed nothing, so the test
that matters runs two venues on the same commands: one takes every tick, the other only
those its scheduler says are due; after every command they must be the same state.
"""
from __future__ import annotations

import random

import pytest

from clearing.messages import FixIndex, MarkStep, RollListing, Settle, SubmitObservation
from engine.messages import CancelOrder, PlaceOrder, Side, Timer, TimeInForce
from gateway.core.scheduler import Scheduler
from gateway.storage.journal import Reader
from inproc import InProcess
from live import SYMBOL

# One class, five months: what the ticks do is the same, and the test runs in seconds.
SMALL = """
[[product]]
gpu_class = "H100"
reference_price = "2.000"
months = 5
quarters = 0
years = 0
"""
SECOND = 10**9
HOUR = 3600 * SECOND
DAY = 24 * HOUR
TICKS = (Timer, MarkStep)


def _market(venue: InProcess, observed_ns: int) -> None:
    """Quotes deep enough for a mark on both sides, and an index from three providers."""
    core, ids = venue.core, venue.accounts.by_name
    maker = ids["maker-1"].account_id
    for side, price in ((Side.BUY, 1990), (Side.SELL, 2010)):
        core.submit(PlaceOrder(ts_ns=venue.ns, account_id=maker, symbol=SYMBOL, side=side,
                               qty=20, price=price))
    for n, price in ((1, 2000), (2, 2010), (3, 1995)):
        core.submit(SubmitObservation(ts_ns=venue.ns, provider_id=ids[f"index-{n}"].account_id,
                                      gpu_class="H100", price=price, hours=1000,
                                      observed_ns=observed_ns))


def _tick(venue: InProcess, scheduler: Scheduler) -> list:
    commands = scheduler.commands(venue.ns)
    for cmd in commands:
        venue.core.submit(cmd)
    return commands


def test_an_idle_market_journals_its_daily_commands_and_little_else(tmp_path):
    """A day of a market nobody trades, one scheduler call a second: the first steps take
    the book's basis, the index's inputs leave their window once, and the daily listing,
    fixing and settlement run with the steps after them; 172,800 ticks were journaled
    before."""
    venue = InProcess(tmp_path / "data")
    _market(venue, venue.ns)
    scheduler = Scheduler(venue.config.schedule, venue.venue, venue.ns)
    start = venue.journal.next_seq
    ran = []
    for _ in range(86_400):
        venue.tick(1.0)
        ran.extend(type(c) for c in _tick(venue, scheduler))
    daily = {kind: ran.count(kind) for kind in (RollListing, FixIndex, Settle)}
    assert daily == {RollListing: 2, FixIndex: 1, Settle: 1}     # the first start's and
                                                                  # the next midnight's
    ticks = ran.count(Timer) + ran.count(MarkStep)
    assert 0 < ticks <= 20, [k.__name__ for k in ran]
    venue.seal()
    assert venue.journal.next_seq - start == len(ran)
    kinds = [type(r.cmd) for r in Reader(venue.journal.directory, after=start - 1)]
    assert kinds == ran


def test_a_step_left_out_when_the_basis_still_moves_is_not_left_out(tmp_path):
    """The basis moves toward the book a little every step; each step that moved it is
    followed by another until it stops."""
    venue = InProcess(tmp_path / "data", SMALL)
    _market(venue, venue.ns)
    scheduler = Scheduler(venue.config.schedule, venue.venue, venue.ns)
    for _ in range(3):
        venue.tick(1.0)
        _tick(venue, scheduler)
    maker = venue.accounts.by_name["maker-1"].account_id
    venue.core.submit(PlaceOrder(ts_ns=venue.ns, account_id=maker, symbol=SYMBOL,
                                 side=Side.BUY, qty=40, price=2005))     # the mid moves up
    steps, mark = 0, venue.venue.house.marks[SYMBOL]
    basis = mark.basis_nano
    while True:
        venue.tick(1.0)
        ran = _tick(venue, scheduler)
        if MarkStep not in map(type, ran):
            break
        steps += 1
        assert steps < 50_000
    assert steps > 100 and mark.basis_nano > basis
    assert not venue.venue.ticks_due(venue.ns + SECOND)[1]


def _same(every: InProcess, due: InProcess, ns: int, where) -> None:
    """Equal clocks first (a Timer left out leaves the engine's clock where it was), then
    the same state."""
    for v in (every, due):
        v.core.submit(Timer(ts_ns=ns + 1))
    assert every.digest() == due.digest(), where


@pytest.mark.parametrize("seed", [1, 2])
def test_leaving_out_the_ticks_that_are_not_due_changes_no_state(tmp_path, seed):
    """Two venues, the same commands at the same times over six days: quotes deep enough
    for marks, orders (GTD ones expiring, trades moving books and positions), cancels,
    index observations (which leave their window a day later), in busy hours and long
    quiet ones; the first contract reaches its last trading time. One venue takes a Timer
    and a mark step every 20 s, the other only those due. After every command, and every
    half hour when nothing happens, their states are equal."""
    # The listing step away from midnight, and busy hours in a 7-hour cycle: days begin,
    # and index inputs leave their window, in quiet hours too; a basis that settles within
    # minutes, so quiet hours are quiet.
    config = SMALL + '[schedule]\nlisting = "06:00"\n[clearing.marks]\nhalf_life_steps = 2\n'
    every = InProcess(tmp_path / "every", config)
    due = InProcess(tmp_path / "due", config)
    every.venue.ticks_due = lambda ts: (True, True)
    venues = (every, due)
    for v in venues:
        _market(v, v.ns)
    schedulers = [Scheduler(v.config.schedule, v.venue, v.ns) for v in venues]
    rng = random.Random(seed)
    ids = every.accounts.by_name
    traders = [ids[n].account_id for n in ("trader-1", "trader-2", "maker-1")]
    providers = [ids[f"index-{n}"].account_id for n in (1, 2, 3)]
    symbols = [s for s in every.venue.exchange.markets][:2]
    first = every.venue.house.instruments[symbols[0]]
    placed = skipped = 0
    steps = 6 * DAY // (20 * SECOND)
    for step in range(steps):
        for v in venues:
            v.tick(20.0)
        ns = every.ns
        busy = (ns // HOUR) % 7 < 3               # three busy hours in seven
        commands = []
        roll = rng.random() if busy else 1.0
        if roll < 0.05:
            placed += 1
            gtd = rng.random() < 0.5
            commands.append(PlaceOrder(
                ts_ns=ns, account_id=rng.choice(traders), symbol=rng.choice(symbols),
                side=rng.choice((Side.BUY, Side.SELL)), qty=rng.randint(1, 30),
                price=rng.randint(1950, 2050), client_order_id=f"o{placed}",
                tif=TimeInForce.GTD if gtd else TimeInForce.GTC,
                expire_at_ns=ns + rng.randint(1, 7200) * SECOND if gtd else None))
        elif roll < 0.07 and placed:
            commands.append(CancelOrder(ts_ns=ns, account_id=rng.choice(traders),
                                        client_order_id=f"o{rng.randint(1, placed)}"))
        elif roll < 0.09:
            commands.append(SubmitObservation(
                ts_ns=ns, provider_id=rng.choice(providers), gpu_class="H100",
                price=rng.randint(1950, 2050), hours=rng.randint(100, 2000),
                observed_ns=ns - rng.randint(0, 600) * SECOND))
        for cmd in commands:
            for v in venues:
                v.core.submit(cmd)
        ran = [_tick(v, s) for v, s in zip(venues, schedulers)]
        skipped += len(ran[0]) - len(ran[1])
        if commands or step % 90 == 0:
            _same(every, due, ns, (seed, step, ran))
    assert every.ns > first.last_trading_ns
    assert skipped > steps                       # most of the 2 x steps ticks were left out


def test_a_liquidation_waiting_keeps_the_step_due(tmp_path):
    venue = InProcess(tmp_path / "data", SMALL)
    house = venue.venue.house
    venue.core.submit(MarkStep(ts_ns=venue.ns))
    venue.core.submit(MarkStep(ts_ns=venue.ns + 1))
    assert house.quiet is not None and not house.mark_due(venue.ns + 2)
    house.pending.add(venue.accounts.by_name["trader-1"].account_id)
    assert house.mark_due(venue.ns + 2)


def test_contracts_reach_their_boundaries_at_midnight(tmp_path):
    """mark_due counts on it: a new day makes a step due, and with it every contract
    reaching its last trading time or the end of its delivery."""
    venue = InProcess(tmp_path / "data", SMALL + "weeks = 3\nlast_trading_days_before = 2\n")
    instruments = venue.venue.house.instruments.values()
    assert {i.kind for i in instruments} == {"week", "month"}
    assert all(i.last_trading_ns % DAY == 0 == i.delivery_end_ns % DAY for i in instruments)


def test_a_strip_is_forgotten_after_its_retention_on_an_idle_market_too(tmp_path):
    """Found by a review: a strip's resend was answered from a table pruned every 100,000
    commands, ticks included; with idle ticks left out, an idle market kept a strip for
    good, and a client_order_id reused past the retention was answered as a duplicate.
    Whether a strip is still remembered now depends on its time alone."""
    venue = InProcess(tmp_path / "data", SMALL)
    trader = venue.session("trader-1")
    symbols = sorted(venue.venue.exchange.markets)[1:3]     # trading still in eight days
    strip = dict(symbols=symbols, side="buy", qty=1, price="1.900", tif="ioc",
                 client_order_id="strip-1")
    venue.result(trader, "order.place_strip", **strip)
    assert venue.result(trader, "order.place_strip", **strip)["duplicate"] is True
    scheduler = Scheduler(venue.config.schedule, venue.venue, venue.ns)
    for _ in range(8 * 24):                           # eight idle days, a tick an hour
        venue.tick(3600.0)
        _tick(venue, scheduler)
    trader = venue.session("trader-1")
    assert "duplicate" not in venue.result(trader, "order.place_strip", **strip)
