"""The projection: one pass over a command's events gives the histories, the feed's events,
the private updates with the fees clearing booked, and the reply's order view."""
from __future__ import annotations

import json
from decimal import Decimal

from engine.messages import PlaceOrder, Side
from engine.prices import format_money
from gateway.core.auth import FEE_ACCOUNT
from inproc import InProcess
from live import SYMBOL


def notes(outbox, session, channel: str) -> list:
    out = []
    for frame in outbox.frames(session):
        message = json.loads(frame)
        if message.get("params", {}).get("channel") == channel:
            out.append(message["params"]["data"])
    return out


def test_a_trade_s_updates_carry_the_fees_clearing_booked_and_the_reply_s_view(tmp_path):
    venue = InProcess(tmp_path / "data")
    maker, taker = venue.session("trader-1"), venue.session("trader-2")
    venue.result(maker, "subscribe", channels=["orders", "fills"])
    venue.result(taker, "subscribe", channels=["orders", "fills"])
    venue.seal()
    resting = venue.result(maker, "order.place", symbol=SYMBOL, side="sell", qty=3,
                           price="2.100")
    venue.seal()
    ledger = venue.venue.house.ledger
    fees_before = ledger.accounts[FEE_ACCOUNT].collateral if FEE_ACCOUNT in ledger.accounts \
        else 0
    reply = venue.result(taker, "order.place", symbol=SYMBOL, side="buy", qty=2,
                         price="2.100")
    outbox = venue.seal()
    [maker_fill] = notes(outbox, maker, "fills")[0]
    [taker_fill] = notes(outbox, taker, "fills")[0]
    booked = ledger.accounts[FEE_ACCOUNT].collateral - fees_before
    assert booked > 0
    assert (maker_fill["liquidity"], taker_fill["liquidity"]) == ("maker", "taker")
    assert Decimal(maker_fill["fee"]) + Decimal(taker_fill["fee"]) == Decimal(
        format_money(booked))
    # The reply is the view the orders channel sent, built once.
    [taker_update] = notes(outbox, taker, "orders")
    assert taker_update == reply and reply["status"] == "filled"
    [maker_update] = notes(outbox, maker, "orders")
    assert (maker_update["order_id"], maker_update["filled_qty"]) == (resting["order_id"], 2)
    # The histories: each order's fills, each account's fill history.
    assert [f["qty"] for f in venue.result(maker, "order.get",
                                           order_id=resting["order_id"])["fills"]] == [2]
    assert venue.result(taker, "account.fills")[0]["fee"] == taker_fill["fee"]


def test_nobody_listening_builds_no_private_update(tmp_path):
    """Private updates are built only while someone has a private channel: a trade with
    nobody subscribed touches no order view and renders no fill; once one account
    listens, the same trade's are built for both sides."""
    venue = InProcess(tmp_path / "data")
    maker, taker = venue.session("trader-1"), venue.session("trader-2")

    def trade() -> object:
        venue.result(maker, "order.place", symbol=SYMBOL, side="sell", qty=1, price="2.100")
        venue.tick()
        return venue.core.submit(PlaceOrder(ts_ns=venue.ns, account_id=2, symbol=SYMBOL,
                                            side=Side.BUY, qty=1, price=2100))
    quiet = trade()
    assert [type(e).__name__ for e in quiet.events].count("Trade") == 1
    assert (quiet.touched, quiet.fills, quiet.accounts) == ({}, {}, set())
    venue.result(maker, "subscribe", channels=["fills"])
    heard = trade()
    assert set(heard.fills) == {1, 2} and heard.accounts == {1, 2} and len(heard.touched) == 2


def test_a_snapshot_taken_in_a_turn_lines_up_with_the_deltas_that_follow(tmp_path):
    """A book snapshot sent mid-turn (a subscribe after the ticker's tick, or after
    admin.state) and the deltas of that turn line up: each delta's prev_seq is the seq the
    subscriber last saw. (The tick once applied the turn's events to the feed early, so the
    snapshot already held a change the seal then sent again as a delta: a false gap.)"""
    venue = InProcess(tmp_path / "data")
    trader, admin = venue.session("trader-1"), venue.session("admin")
    venue.seal()
    for step in (venue.core.tick, lambda: venue.result(admin, "admin.state")):
        venue.result(trader, "order.place", symbol=SYMBOL, side="buy", qty=1, price="2.000")
        step()
        watcher = venue.session()
        venue.result(watcher, "subscribe", channels=[f"book.{SYMBOL}"])
        seen = None
        for data in notes(venue.seal(), watcher, f"book.{SYMBOL}"):
            if data["type"] == "snapshot":
                seen = data["seq"]
            else:
                assert data["prev_seq"] == seen, (step, data, seen)
                seen = data["seq"]
        assert seen == venue.feed.symbols[SYMBOL].book.seq


def test_a_symbols_fills_are_found_without_scanning_the_others():
    """account.fills with a symbol scanned every fill of the account: 200 calls for a symbol
    never traded, on 62,000 fills, blocked everyone for 2.4 s (issue 21, 3). Now the fills
    are indexed by symbol: a page looks at no more rows than it returns."""
    from engine.messages import Side, Trade
    from gateway.core.fills import AccountFills
    fills = AccountFills(["H100-2027-03", "H100-2027-04"])
    for k in range(1, 20_001):
        symbol = "H100-2027-04" if k % 1000 == 0 else "H100-2027-03"
        fills.record(Trade(k, symbol, 2000, 1, Side.BUY, 1, 1, 0, 2, 2, 0, k), 0, 0)
    assert fills.page(1, "H100-2027-04", 5, None) == fills.page(1, "H100-2027-04", 5, None)
    rows = fills.page(1, "H100-2027-04", 5, None)
    assert [r["trade_id"] for r in rows] == [20_000, 19_000, 18_000, 17_000, 16_000]
    assert fills.scanned == 5
    assert [r["trade_id"] for r in fills.page(1, "H100-2027-04", 3, 17_000)] == \
        [16_000, 15_000, 14_000] and fills.scanned == 3
    fills.add("H100-2027-05")
    assert fills.page(1, "H100-2027-05", 100, None) == [] and fills.scanned == 0
    assert [r["trade_id"] for r in fills.page(1, None, 2, 5)] == [4, 3] and fills.scanned == 2


def test_reading_fills_leaves_the_state_digest_alone(tmp_path):
    """What a page scanned is not state: a replay, which reads nothing, must match."""
    from inproc import InProcess
    venue = InProcess(tmp_path / "data")
    trader, other = venue.session("trader-1"), venue.session("trader-2")
    venue.result(trader, "order.place", symbol="H100-2027-03", side="sell", qty=1,
                 price="2.000")
    venue.result(other, "order.place", symbol="H100-2027-03", side="buy", qty=1,
                 price="2.000")
    venue.seal()
    before = venue.digest()
    assert len(venue.result(trader, "account.fills", symbol="H100-2027-03")) == 1
    assert venue.venue.account_fills.scanned == 1
    assert venue.digest() == before


def test_a_snapshot_from_before_the_symbol_index_and_the_history_loads():
    """Snapshots written before the fills' index by symbol and the feed's history lack
    them: loading rebuilds the index from the fills and starts an empty history."""
    import pickle

    from engine.messages import Side, Trade
    from gateway.core.feed import Feed
    from gateway.core.fills import AccountFills
    fills = AccountFills(["H100-2027-03", "H100-2027-04"])
    for k, symbol in enumerate(["H100-2027-03", "H100-2027-04", "H100-2027-03"], start=1):
        fills.record(Trade(k, symbol, 2000, 1, Side.BUY, 1, 1, 0, 2, 2, 0, k), 0, 0)
    old = AccountFills.__new__(AccountFills)
    old.__setstate__({k: v for k, v in pickle.loads(pickle.dumps(fills)).__dict__.items()
                      if k not in ("_rows", "scanned")})
    assert old.page(1, "H100-2027-03", 10, None) == fills.page(1, "H100-2027-03", 10, None)
    assert [r["trade_id"] for r in old.page(1, "H100-2027-03", 10, None)] == [3, 1]
    feed = Feed(["H100-2027-03"])
    before = Feed.__new__(Feed)
    before.__setstate__({k: v for k, v in feed.__dict__.items() if k != "history"})
    assert before.history.settlements == {} and before.history.knows("H100-2027-03") is False
