"""The term structure over simulated time: the rolling listing and the cascades, in-process,
every command stamped with the simulated time and journaled, then replayed.

Two years of days with one class listing 12 months, 8 quarters and 3 years: the calendar
always holds its configured number of each tenor, nothing is listed, cascaded or settled
twice, positions and cash are zero-sum every day, a cascade moves no cash and keeps each
account's exposure to every delivery month, and the journal replays to the same state.
"""
from __future__ import annotations

import datetime
import json
import random
from array import array
from collections import Counter, deque

import msgspec
from sortedcontainers import SortedDict, SortedList

from clearing.margin import requirement
from clearing.messages import (
    Cascaded, InstrumentSettled, RollListing, Settled, SubmitObservation,
)
from engine.contracts import parse_symbol, utc_day
from engine.messages import InstrumentDelisted, InstrumentListed, PlaceOrder, Side
from gateway.core.history import KEPT_MS
from gateway.core.scheduler import Scheduler
from gateway.storage.recovery import build, recover, state_digest
from inproc import InProcess
from live import AS_OF

HOUR = 3600 * 10**9
DAY = 24 * HOUR
CONFIG = """
[[product]]
gpu_class = "H100"
reference_price = "2.000"
months = 12
quarters = 8
years = 3

[clearing]
settlement_min_volume = 1
settlement_min_oi_bps = 0
"""
TENORS = {"month": 12, "quarter": 8, "year": 3}
OPERATOR, LAB, TAKER = "operator-1", "lab-1", "taker-1"


class Simulation:
    """An InProcess venue driven day by day through its scheduler's commands."""

    def __init__(self, data_dir) -> None:
        self.v = InProcess(data_dir, CONFIG)
        self.house = self.v.venue.house
        self.scheduler = Scheduler(self.v.config.schedule, self.v.venue, self.v.ns)
        self.events: list = []
        self.rng = random.Random(17)
        ids = self.v.accounts.by_name
        self.traders = [ids[n].account_id for n in (OPERATOR, LAB, TAKER)]
        self.providers = [ids[f"index-{n}"].account_id for n in (1, 2, 3)]

    def submit(self, cmd) -> list:
        events = self.v.core.submit(cmd).events
        self.events.extend(events)
        return events

    def at(self, ns: int) -> list:
        """Run what the scheduler says is due at ``ns``; return the listing step's events
        (and note the holdings just before and after it)."""
        self.v.ns = ns
        out = []
        for cmd in self.scheduler.commands(ns):
            if type(cmd) is RollListing:
                self.before_roll = self.holdings()
                out = self.submit(cmd)
                self.after_roll = self.holdings()
            else:
                self.submit(cmd)
        self.v.seal()
        return out

    def observe(self, ns: int) -> None:
        price = 2000 + self.rng.randint(-150, 150)
        for provider in self.providers:
            self.submit(SubmitObservation(ts_ns=ns, provider_id=provider, gpu_class="H100",
                                          price=price, hours=100, observed_ns=ns))

    def trade(self, ns: int) -> None:
        """A crossing pair of orders in a trading contract, longer tenors more often."""
        markets = self.v.venue.exchange.markets
        trading = [s for s, m in markets.items() if m.instrument.is_trading(ns)]
        weights = [{"year": 6, "quarter": 3, "month": 1}[markets[s].instrument.kind]
                   for s in trading]
        symbol = self.rng.choices(trading, weights)[0]
        market = markets[symbol]
        price = self.rng.randint(market.band_low, market.band_high)
        buyer, seller = self.rng.sample(self.traders, 2)
        qty = self.rng.randint(1, 4)
        for account, side in ((seller, Side.SELL), (buyer, Side.BUY)):
            self.submit(PlaceOrder(ts_ns=ns, account_id=account, symbol=symbol, side=side,
                                   qty=qty, price=price))

    def day(self, midnight: int) -> list:
        """One day: the listing step at 00:00, trading and observations by day, the fixing
        and the settlement. Returns the listing step's events."""
        rolled = self.at(midnight)
        for hour in (9, 12, 15):
            ns = midnight + hour * HOUR
            self.v.ns = ns
            self.observe(ns)
            if self.rng.random() < 0.6:
                self.trade(ns)
            self.at(ns + 1)
        self.at(midnight + 16 * HOUR)
        self.at(midnight + 16 * HOUR + 30 * 60 * 10**9)
        return rolled

    def holdings(self) -> dict:
        ledger = self.house.ledger
        return {"cash": {a: acc.collateral for a, acc in ledger.accounts.items()},
                "months": {a: exposure_by_month(acc.positions)
                           for a, acc in ledger.accounts.items()}}


def exposure_by_month(positions) -> Counter:
    """Lots held for delivery in each calendar month, through any tenor: what a cascade keeps."""
    out: Counter = Counter()
    for symbol, pos in positions.items():
        if not pos.qty:
            continue
        period = parse_symbol(symbol).period
        day = period.start
        while day < period.end:
            out[(day.year, day.month)] += pos.qty
            day = (day.replace(day=1) + datetime.timedelta(days=32)).replace(day=1)
    return +out


def check_day(sim: Simulation, midnight: int) -> None:
    house, exchange = sim.house, sim.v.venue.exchange
    ledger = house.ledger
    # The calendar is full: of each tenor exactly its configured number trade.
    trading = Counter(m.instrument.kind for m in exchange.markets.values()
                      if m.instrument.is_trading(midnight))
    assert trading == TENORS, (datetime.date.fromtimestamp(midnight // 10**9), trading)
    assert set(exchange.markets) == set(house.instruments) == set(ledger.contracts)
    # Zero-sum: positions per instrument and cash across accounts.
    for symbol in ledger.contracts:
        held = [a.positions[symbol].qty for a in ledger.accounts.values()
                if symbol in a.positions]
        assert sum(held) == 0, symbol
        assert ledger.open_interest(symbol) == sum(q for q in held if q > 0), symbol
    assert sum(a.collateral for a in ledger.accounts.values()) == ledger.deposited
    # Margin kept incrementally equals margin computed afresh.
    for account_id in sim.traders:
        positions = {s: p.qty for s, p in ledger.accounts[account_id].positions.items()}
        orders = [(o.symbol, o.side, o.leaves, o.price)
                  for o in house.risk.by_account.get(account_id, {}).values()]
        assert house.risk.margin(account_id) == requirement(
            house.risk.legs, positions, orders, house.risk.params_by_class)


def test_two_years_of_days_keep_the_calendar_full_and_cascade_exactly(tmp_path):
    sim = Simulation(tmp_path / "data")
    midnight = (sim.v.ns // DAY + 1) * DAY
    cascades = 0
    for _ in range(2 * 366):
        rolled = sim.day(midnight)
        check_day(sim, midnight)
        cascades += sum(type(ev) is Cascaded for ev in rolled)
        # The listing step moves no cash, and each account keeps its exposure to every
        # delivery month, whichever tenor now carries it.
        assert sim.after_roll == sim.before_roll
        midnight += DAY
    listed = [ev.symbol for ev in sim.events if type(ev) is InstrumentListed]
    assert len(listed) == len(set(listed))                        # nothing listed twice
    settled = [ev.symbol for ev in sim.events if type(ev) is InstrumentSettled]
    assert len(settled) == len(set(settled)) > 20                 # nothing settled twice
    done = [ev.symbol for ev in sim.events if type(ev) is Cascaded]
    assert len(done) == len(set(done)) == cascades >= 2 * 4 + 2   # quarters and years
    delisted = [ev.symbol for ev in sim.events if type(ev) is InstrumentDelisted]
    assert len(delisted) == len(set(delisted)) == len(settled) + len(done)
    assert sum(bool(ev.accounts) for ev in sim.events if type(ev) is Cascaded) >= 4
    # A month's final settlement is the last line of its history, tier final, even though
    # it is delisted (market.settlements).
    history = sim.v.feed.history
    for ev in sim.events:
        if type(ev) is InstrumentSettled:
            assert history.settlements[ev.symbol][-1] == (utc_day(ev.ts_ns), ev.price, "final")

    # The journal replays to the same state.
    sim.v.seal()
    replayed = recover(tmp_path / "data", lambda: build(sim.v.config, AS_OF,
                                                         sim.v.accounts.by_id.values()))
    assert replayed.replayed > 10_000
    assert state_digest(replayed.venue, replayed.feed) == sim.v.digest()


# Where a contract's name stays after its delisting: the records kept of it (the history a
# lender audits, PROTOCOL 1.1) and the index its archived fills refer to it by.
KEPT_AFTER_DELISTING = {
    "feed.history.settlements", "feed.history.by_day[*]", "feed.history.candles['1d']",
    "venue.account_fills._index", "venue.account_fills.symbols",
}


def holders(roots: dict, names: set[str]) -> Counter:
    """The containers reachable from ``roots`` that hold one of ``names`` (a key, a member,
    or in a tuple key), by path (attributes, and the dict keys that are not such names),
    with how many they hold."""
    found: Counter = Counter()
    seen: set[int] = set()
    queue = deque(roots.items())
    while queue:
        path, obj = queue.popleft()
        if obj is None or isinstance(obj, (str, bytes, int, float, type)) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (dict, SortedDict)):
            items = list(obj.items())
        elif isinstance(obj, (list, tuple, set, frozenset, deque, SortedList, array)):
            items = [(None, v) for v in obj]
        else:
            fields = obj.__struct_fields__ if isinstance(obj, msgspec.Struct) else [
                *getattr(obj, "__dict__", ()),
                *(n for c in type(obj).__mro__ for n in getattr(c, "__slots__", ()))]
            queue.extend((f"{path}.{n}", getattr(obj, n, None)) for n in fields)
            continue
        for key, value in items:
            named = key in names if isinstance(key, str) else (
                isinstance(key, tuple) and any(k in names for k in key if isinstance(k, str)))
            found[path] += named or (isinstance(value, str) and value in names)
            step = "[*]" if named or not isinstance(key, str) else f"[{key!r}]"
            queue.append((path + (step if key is not None else "[]"), value))
    return +found


def test_a_delisted_contract_leaves_only_its_records_behind(tmp_path):
    """Month after month contracts are listed and delisted: what the venue keeps of one
    that is gone is its record (settlements, daily candles, the curve of each day), and
    its minute and hourly candles only as long as anyone's are kept, so state does not
    grow with the contracts that came and went."""
    sim = Simulation(tmp_path / "data")
    midnight = (sim.v.ns // DAY + 1) * DAY
    for _ in range(400):
        sim.day(midnight)
        midnight += DAY
    gone = {ev.symbol for ev in sim.events if type(ev) is InstrumentDelisted}
    assert len(gone) > 12
    found = holders({"venue": sim.v.venue, "feed": sim.v.feed, "core": sim.v.core}, gone)
    aging = {f"feed.history.candles[{i!r}]" for i in ("1m", "1h")}
    assert set(found) - aging <= KEPT_AFTER_DELISTING, found
    settled_ms = max(ev.ts_ns for ev in sim.events if type(ev) is Settled) // 10**6
    for interval in ("1m", "1h"):
        for symbol, series in sim.v.feed.history.candles[interval].items():
            assert series and series[0][0] >= settled_ms - KEPT_MS[interval], symbol
    assert len(sim.v.feed.history.candles["1h"]) < len(sim.v.feed.history.candles["1d"])


def test_a_listing_step_is_idempotent_within_a_day(tmp_path):
    sim = Simulation(tmp_path / "data")
    sim.at(sim.v.ns)
    markets = set(sim.v.venue.exchange.markets)
    events = sim.submit(RollListing(ts_ns=sim.v.ns + 1))
    assert set(sim.v.venue.exchange.markets) == markets
    assert not [ev for ev in events if type(ev) in (InstrumentListed, InstrumentDelisted)]


def test_a_cascade_is_told_on_the_admin_and_instruments_channels(tmp_path):
    """The listing step at a quarter's last trading time: the admin channel says what
    cascaded and what the listing changed; the instruments channel says each delisting
    with the instrument as it was."""
    venue = InProcess(tmp_path / "data", CONFIG)
    admin = venue.session("admin")
    venue.result(admin, "subscribe", channels=["admin", "instruments"])
    venue.seal()
    quarter = min((i for i in venue.venue.house.instruments.values() if i.kind == "quarter"),
                  key=lambda i: i.last_trading_ns)
    venue.ns = quarter.last_trading_ns
    venue.core.submit(RollListing(ts_ns=venue.ns))
    notes = [json.loads(f) for f in venue.seal().frames(admin)]
    told = [(n["params"]["channel"], n["params"]["data"]["type"]) for n in notes]
    assert ("admin", "cascaded") in told and ("admin", "listing") in told
    # The year 2027 reaches its last trading time with its first quarter: it cascades
    # first, into quarters, and then Q1 into its months.
    cascaded = [n["params"]["data"] for n in notes if n["params"]["data"]["type"] == "cascaded"]
    assert [(c["symbol"], len(c["into"])) for c in cascaded] == [("H100-2027", 4),
                                                                  (quarter.symbol, 3)]
    delisted = [n["params"]["data"]["instrument"] for n in notes
                if n["params"]["channel"] == "instruments"
                and n["params"]["data"]["type"] == "delisted"]
    assert [(i["symbol"], i["status"]) for i in delisted] == [("H100-2027", "settled"),
                                                              (quarter.symbol, "settled")]
    listed = [n["params"]["data"]["instrument"]["symbol"] for n in notes
              if n["params"]["channel"] == "instruments"
              and n["params"]["data"]["type"] == "listed"]
    assert listed and all(s not in venue.venue.house.final for s in listed)


def test_a_contract_listed_in_this_turn_is_served_at_once(tmp_path):
    """A listing step and a request in the same event-loop turn: market.curve, market.book,
    market.trades and market.ticker's feed read the contract the step has just listed
    (they answered internal_error, the feed not having taken the listing until the turn
    ended), and a contract it has just delisted is gone from them."""
    venue = InProcess(tmp_path / "data", CONFIG)
    anyone = venue.session()
    month = max((i for i in venue.venue.house.instruments.values() if i.kind == "month"),
                key=lambda i: i.delivery_start)
    venue.ns = min(i.last_trading_ns for i in venue.venue.house.instruments.values()
                   if i.kind == "month") + HOUR
    listed = {ev.symbol for ev in venue.core.submit(RollListing(ts_ns=venue.ns)).events
              if type(ev) is InstrumentListed}
    assert listed, "the step listed nothing"
    new = sorted(listed)[-1]
    curve = venue.result(anyone, "market.curve", gpu_class="H100")
    assert new in {c["symbol"] for c in curve} and month.symbol in {c["symbol"] for c in curve}
    assert venue.result(anyone, "market.book", symbol=new)["bids"] == []
    assert venue.result(anyone, "market.trades", symbol=new) == []
    assert venue.result(anyone, "subscribe", channels=[f"book.{new}", f"ticker.{new}"])
    venue.seal()
