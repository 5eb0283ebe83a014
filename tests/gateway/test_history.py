"""The history a lender audits (PROTOCOL 1.1): market.settlements, market.curve with a
date, market.candles; kept from the events, so a replay and a snapshot give them back, and
kept after a contract is delisted."""
from __future__ import annotations

import datetime

import pytest

from clearing.messages import InstrumentSettled, Settled
from engine.contracts import date_to_ns
from engine.messages import Side, Trade
from gateway.core.history import History
from gateway.storage.recovery import build, recover, state_digest
from inproc import InProcess
from live import AS_OF, SYMBOL

MINUTE = 60 * 10**9
NOON = date_to_ns(AS_OF) + 12 * 3600 * 10**9


def trade(v, buyer, seller, qty, price):
    v.result(seller, "order.place", symbol=SYMBOL, side="sell", qty=qty, price=price)
    v.result(buyer, "order.place", symbol=SYMBOL, side="buy", qty=qty, price=price,
             tif="ioc")
    v.seal()                     # the turn ends: the feed takes its events


def test_candles_settlements_and_the_days_curve_over_the_wire(tmp_path):
    """Trades at 12:00:10, 12:00:50 and 12:01:05 make two 1m candles, one 1h and one 1d;
    admin.settle makes a settlement (tier vwap, the closing window's trades) and that
    day's curve holds every contract of the class; both survive a restart."""
    v = InProcess(tmp_path / "data", "[clearing]\nsettlement_min_volume = 1\n"
                  "settlement_min_oi_bps = 0\n")
    a, b, anyone = v.session("trader-1"), v.session("trader-2"), v.session()
    v.ns = NOON + 10 * 10**9
    trade(v, a, b, 3, "2.110")
    v.ns = NOON + 50 * 10**9
    trade(v, a, b, 2, "2.130")
    v.ns = NOON + MINUTE + 5 * 10**9
    trade(v, b, a, 4, "2.090")
    noon_ms = NOON // 10**6
    assert v.result(anyone, "market.candles", symbol=SYMBOL, interval="1m") == [
        {"time": noon_ms, "open": "2.110", "high": "2.130", "low": "2.110", "close": "2.130",
         "volume": 5},
        {"time": noon_ms + 60_000, "open": "2.090", "high": "2.090", "low": "2.090",
         "close": "2.090", "volume": 4}]
    [hour] = v.result(anyone, "market.candles", symbol=SYMBOL, interval="1h")
    [day] = v.result(anyone, "market.candles", symbol=SYMBOL, interval="1d")
    assert hour == {**day, "time": noon_ms} and day["time"] == date_to_ns(AS_OF) // 10**6
    assert (day["open"], day["high"], day["low"], day["close"], day["volume"]) == \
        ("2.110", "2.130", "2.090", "2.090", 9)
    assert v.result(anyone, "market.candles", symbol=SYMBOL, interval="1m", limit=1,
                    to=noon_ms + 59_999) == [
        v.result(anyone, "market.candles", symbol=SYMBOL, interval="1m")[0]]
    assert v.result(anyone, "market.candles", symbol="H100-2027-04", interval="1d") == []
    v.ns = NOON + 20 * MINUTE                  # the closing window holds the trades
    settled = v.result(v.session("admin"), "admin.settle")["settlement_prices"]
    v.seal()
    assert v.result(anyone, "market.settlements", symbol=SYMBOL) == [
        {"date": AS_OF.isoformat(), "price": settled[SYMBOL], "tier": "vwap"}]
    assert v.result(anyone, "market.settlements", symbol=SYMBOL,
                    **{"from": "2026-11-26"}) == []
    curve = v.result(anyone, "market.curve", gpu_class="H100", date=AS_OF.isoformat())
    assert len(curve) == 23
    assert [c["symbol"] for c in curve[:4]] == ["H100-2026-12", "H100-2027-01", "H100-2027-Q1",
                                                "H100-2027"]
    assert curve[2] == {"symbol": "H100-2027-Q1", "delivery_start": "2027-01-01",
                        "tenor": "quarter", "settlement_price": settled["H100-2027-Q1"]}
    assert {c["symbol"]: c["settlement_price"] for c in curve} == \
        {s: p for s, p in settled.items() if s.startswith("H100-")}
    assert v.result(anyone, "market.curve", gpu_class="H100", date="2026-01-01") == []
    v.seal()
    digest = state_digest(v.venue, v.feed)
    again = recover(tmp_path / "data", lambda: build(v.config, AS_OF,
                                                     v.accounts.by_id.values()))
    assert state_digest(again.venue, again.feed) == digest
    assert again.feed.history.settlements == v.feed.history.settlements


@pytest.mark.parametrize("method, params, field", [
    ("market.candles", {"symbol": SYMBOL, "interval": "5m"}, "interval"),
    ("market.candles", {"symbol": SYMBOL, "interval": "1m", "limit": 0}, "limit"),
    ("market.candles", {"symbol": SYMBOL, "interval": "1m", "limit": 1001}, "limit"),
    ("market.candles", {"symbol": SYMBOL, "interval": "1m", "from": -1}, "from"),
    ("market.candles", {"symbol": SYMBOL}, "interval"),
    ("market.settlements", {"symbol": SYMBOL, "from": "2026-13-01"}, "from"),
    ("market.settlements", {"symbol": SYMBOL, "to": 20261125}, "to"),
    ("market.curve", {"gpu_class": "H100", "date": "yesterday"}, "date"),
])
def test_bad_history_queries_name_the_field(tmp_path, method, params, field):
    v = InProcess(tmp_path / "data")
    error = v.error(v.session(), method, **params)
    assert (error["code"], error["data"]["reason"], error["data"]["field"]) == \
        (-32602, "invalid_params", field)


def test_a_contract_never_listed_is_unknown(tmp_path):
    v = InProcess(tmp_path / "data")
    for method, params in (("market.candles", {"interval": "1d"}), ("market.settlements", {})):
        error = v.error(v.session(), method, symbol="H100-2031-01", **params)
        assert (error["data"]["reason"], error["data"]["field"]) == \
            ("unknown_instrument", "symbol")


def test_a_delisted_contracts_settlements_stay_and_minute_candles_age_out():
    """The history outlives the listing (a final settlement is tier final), and candles
    of a minute are kept for two days, of an hour for 90."""
    history = History()
    day = date_to_ns(datetime.date(2027, 3, 31))
    history.apply(Settled({"H100-2027-03": 2100}, {"H100-2027-03": "delivery_average"}, day))
    history.apply(InstrumentSettled("H100-2027-03", 2095, 31, 0, day + 86_400 * 10**9))
    assert history.settled("H100-2027-03", None, None) == [
        (datetime.date(2027, 3, 31), 2100, "delivery_average"),
        (datetime.date(2027, 4, 1), 2095, "final")]
    assert history.knows("H100-2027-03")
    for k in range(4):
        history.apply(Trade(k + 1, SYMBOL, 2000 + k, 1, Side.BUY, 1, 1, 0, 2, 2, 0,
                            day + k * 86_400 * 10**9))
    assert len(history.candles["1m"][SYMBOL]) == 3     # 3 days: the first has aged out
    assert len(history.candles["1h"][SYMBOL]) == 4 and len(history.candles["1d"][SYMBOL]) == 4


def test_candles_age_out_at_the_daily_settlement_though_their_contract_trades_no_more():
    """A contract that stopped trading (delisted, or quiet) keeps its minute candles for two
    days and its hourly ones for 90 like any other: the daily settlement ages them out, so
    contracts delisted month after month leave only their daily candles behind."""
    history = History()
    day = date_to_ns(datetime.date(2027, 3, 1))
    for k in range(3):
        history.apply(Trade(k + 1, SYMBOL, 2000 + k, 1, Side.BUY, 1, 1, 0, 2, 2, 0,
                            day + k * 3600 * 10**9))
    history.apply(Settled({SYMBOL: 2001}, {SYMBOL: "vwap"}, day + 2 * 86_400 * 10**9))
    assert len(history.candles["1m"][SYMBOL]) == 3             # two days: all still kept
    history.apply(Settled({SYMBOL: 2001}, {SYMBOL: "vwap"}, day + 3 * 86_400 * 10**9))
    assert SYMBOL not in history.candles["1m"]                 # none left: the series goes
    assert len(history.candles["1h"][SYMBOL]) == 3
    history.apply(Settled({SYMBOL: 2001}, {SYMBOL: "vwap"}, day + 91 * 86_400 * 10**9))
    assert SYMBOL not in history.candles["1h"]
    assert len(history.candles["1d"][SYMBOL]) == 1 and history.knows(SYMBOL)
    assert history.window(SYMBOL, "1m", None, None, 10) == []
