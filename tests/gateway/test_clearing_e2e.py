"""Clearing over the wire: account summary and positions, margin, cash, the index, settlement."""
from __future__ import annotations

import asyncio
from fractions import Fraction

from live import SYMBOL, Ws, run


def test_margin_is_checked_before_the_book_and_shown_in_the_summary(live_server):
    """A funded trader's summary; a resting order ties up initial margin; a huge one is refused."""
    async def scenario():
        ws = await Ws.open(live_server, "trader-1")
        summary = await ws.result("account.summary")
        assert summary == {"account": "trader-1", "collateral": "1000000.000000",
                           "equity": "1000000.000000", "unrealized_pnl": "0.000000",
                           "initial_margin": "0.000000", "maintenance_margin": "0.000000",
                           "available": "1000000.000000"}
        await ws.result("order.place", symbol=SYMBOL, side="buy", qty=10, price="2.100")
        summary = await ws.result("account.summary")
        # Long 10 March if filled; March is 4 months from 2026-11-25, so its scanning range
        # is 10% of 2.100: 0.210 x 10 x 744 h = $1,562.40; initial x1.1 = $1,718.64.
        assert (summary["maintenance_margin"], summary["initial_margin"]) == \
            ("1562.400000", "1718.640000")
        assert summary["available"] == "998281.360000"
        error = await ws.error("order.place", symbol=SYMBOL, side="buy", qty=10_000,
                               price="2.100")
        assert (error["code"], error["data"]["reason"]) == (200, "insufficient_margin")
        assert len(await ws.result("order.list")) == 1
        await ws.close()
    run(scenario())


def test_positions_after_a_trade(live_server):
    async def scenario():
        a = await Ws.open(live_server, "trader-1")
        b = await Ws.open(live_server, "trader-2")
        await a.result("order.place", symbol=SYMBOL, side="sell", qty=4, price="2.110")
        await b.result("order.place", symbol=SYMBOL, side="buy", qty=4, price="2.110")
        [pos] = await b.result("account.positions")
        assert pos == {"symbol": SYMBOL, "qty": 4, "avg_price": "2.110",
                       "realized_pnl": "0.000000", "unrealized_pnl": "-29.760000",
                       "mark_price": "2.100"}
        assert (await a.result("account.positions"))[0]["qty"] == -4
        await a.close()
        await b.close()
    run(scenario())


def test_admin_moves_cash_and_a_withdrawal_keeps_initial_margin(live_server):
    async def scenario():
        admin = await Ws.open(live_server, "admin")
        trader = await Ws.open(live_server, "trader-1")
        got = await admin.result("admin.deposit", account="trader-1", amount="500.25")
        assert got["collateral"] == "1000500.250000"
        await trader.result("order.place", symbol=SYMBOL, side="buy", qty=3000, price="2.100")
        available = (await trader.result("account.summary"))["available"]
        error = await admin.error("admin.withdraw", account="trader-1", amount="999999")
        assert (error["code"], error["data"]["reason"]) == (200, "insufficient_margin")
        got = await admin.result("admin.withdraw", account="trader-1", amount=available)
        assert got["available"] == "0.000000"
        for params, reason in ((dict(account="nobody", amount="1"), "unknown_account"),
                               (dict(account="trader-1", amount="0"), "invalid_amount"),
                               (dict(account="trader-1", amount="-5"), "invalid_amount"),
                               (dict(account="trader-1", amount="1.0000001"), "invalid_amount")):
            assert (await admin.error("admin.deposit", **params))["data"]["reason"] == reason
        assert (await trader.error("admin.deposit", account="trader-1", amount="1"))["data"][
            "reason"] == "forbidden"
        await admin.close()
        await trader.close()
    run(scenario())


def test_index_providers_make_the_index_and_admin_fixes_it(live_server):
    """Three providers are needed; then each one's price, weighted by capped hours; a fixing
    keeps it."""
    async def scenario():
        providers = [await Ws.open(live_server, f"index-{i}") for i in (1, 2, 3)]
        values = [(await ws.result("index.submit", gpu_class="H100", price=price, hours=hours))
                  ["index_value"]
                  for ws, price, hours in zip(providers, ("2.05", "2.15", "2.30"), (10, 10, 5))]
        assert values[:2] == [None, None]
        # Hours 10, 10 and 5 are capped at a third each: (2.05 + 2.15 + 2.30) / 3 -> 2.167
        assert values[2] == "2.167"
        viewer = await Ws.open(live_server, "viewer-1")
        index = await viewer.result("market.index", gpu_class="H100")
        assert (index["value"], index["source"], index["fixings"]) == ("2.167", "builtin", [])
        admin = await Ws.open(live_server, "admin")
        fixed = await admin.result("admin.fix_index", gpu_class="H100")
        assert [(f["gpu_class"], f["value"]) for f in fixed] == [("H100", "2.167")]
        index = await viewer.result("market.index", gpu_class="H100")
        assert index["fixings"] == [{"date": fixed[0]["date"], "value": "2.167"}]
        fixing = await viewer.result("market.fixing", gpu_class="H100", date=fixed[0]["date"])
        assert (fixing["value"], fixing["source"], fixing["carried"]) == ("2.167", "builtin",
                                                                         False)
        assert [(p["provider"], p["price"], p["hours"], p["weight"], p["excluded"])
                for p in fixing["providers"]] == [
            ("index-1", "2.050000000000", 10, "0.333333334", False),
            ("index-2", "2.150000000000", 10, "0.333333333", False),
            ("index-3", "2.300000000000", 5, "0.333333333", False)]
        # Anyone can recompute it from what it publishes: sum(w x p) / 10^18 ticks, half even.
        total = sum(p["weight_ppb"] * p["price_nano"] for p in fixing["providers"])
        assert round(Fraction(total, 10**18)) == 2167
        assert fixing["method"] == {"window_hours": 24.0, "trim": "0.1000",
                                    "max_deviation": "0.2000", "max_share": "1/3",
                                    "min_providers": 3,
                                    "sources": ["external", "builtin", "previous"],
                                    "rounding": "half_even"}
        for params, reason, field in (
                (dict(gpu_class="H100", date="2026-11-24"), "no_fixing", "date"),
                (dict(gpu_class="X9", date=fixed[0]["date"]), "unknown_gpu_class", "gpu_class"),
                (dict(gpu_class="H100", date="2026-13-01"), "invalid_params", "date"),
                (dict(gpu_class="H100"), "invalid_params", "date")):
            error = await viewer.error("market.fixing", **params)
            assert (error["data"]["reason"], error["data"].get("field")) == (reason, field)
        assert "history" not in index
        latest = (await providers[0].result("index.submit", gpu_class="H100", price="2.20",
                                            hours=10))["index_value"]
        # A point a minute, the last value of it: one point, or two across a minute's turn.
        history = (await viewer.result("market.index", gpu_class="H100",
                                       history=True))["history"]
        assert [point["value"] for point in history] in (["2.167", latest], [latest])
        # index-1's own price: 2 h off each end of 2.05 x 10 and 2.20 x 10 is 2.125;
        # (2.125 + 2.15 + 2.30) / 3 -> 2.192
        assert latest == "2.192"
        assert (await viewer.error("market.index", gpu_class="H100", history="yes"))[
            "data"]["field"] == "history"
        future = (await viewer.result("session.test"))["server_time"] + 60_000
        for params, reason in ((dict(gpu_class="H100", price="2.1", hours=0),
                                "invalid_observation"),
                               (dict(gpu_class="X9", price="2.1", hours=1), "unknown_gpu_class"),
                               (dict(gpu_class="H100", price="2.1", hours=1, time=future),
                                "timestamp_in_future"),
                               (dict(gpu_class="H100", price="2.1001", hours=1),
                                "price_off_tick")):
            assert (await providers[0].error("index.submit", **params))["data"]["reason"] == \
                reason
        assert (await viewer.error("index.submit", gpu_class="H100", price="2.1",
                                   hours=1))["data"]["reason"] == "forbidden"
        assert (await viewer.error("market.index", gpu_class="X9"))["data"]["reason"] == \
            "unknown_gpu_class"
        for ws in (*providers, viewer, admin):
            await ws.close()
    run(scenario())


def test_admin_settle_pays_variation_margin(live_server):
    """trader-1 sells 30 at 2.110 to trader-2 and 30 at 2.120 to maker-1: the closing VWAP of
    60 lots (over the 50-lot minimum) is 2.115, so trader-2 gets 0.005 x 30 x 744 h =
    $111.60 and maker-1 pays it."""
    async def scenario():
        a = await Ws.open(live_server, "trader-1")
        b = await Ws.open(live_server, "trader-2")
        m = await Ws.open(live_server, "maker-1")
        admin = await Ws.open(live_server, "admin")
        await a.result("order.place", symbol=SYMBOL, side="sell", qty=30, price="2.110")
        await b.result("order.place", symbol=SYMBOL, side="buy", qty=30, price="2.110")
        await a.result("order.place", symbol=SYMBOL, side="sell", qty=30, price="2.120")
        await m.result("order.place", symbol=SYMBOL, side="buy", qty=30, price="2.120")
        before = [(await ws.result("account.summary"))["collateral"] for ws in (a, b, m)]
        prices = (await admin.result("admin.settle"))["settlement_prices"]
        assert prices[SYMBOL] == "2.115" and len(prices) == 92
        after = [(await ws.result("account.summary"))["collateral"] for ws in (a, b, m)]
        moved = [round((float(x) - float(y)) * 1e6) for x, y in zip(after, before)]
        assert moved == [0, 111_600_000, -111_600_000]
        for ws in (a, b, m, admin):
            await ws.close()
    run(scenario())


def test_account_fills_newest_first_with_fees_and_paging(live_server):
    """Three fills: newest first; symbol filter; before pages back; the taker pays 2.5 bp."""
    async def scenario():
        a = await Ws.open(live_server, "trader-1")
        b = await Ws.open(live_server, "trader-2")
        for price in ("2.110", "2.120", "2.130"):
            await a.result("order.place", symbol=SYMBOL, side="sell", qty=2, price=price)
            await b.result("order.place", symbol=SYMBOL, side="buy", qty=2, price=price)
        fills = await b.result("account.fills")
        assert [f["trade_id"] for f in fills] == [3, 2, 1]
        newest = fills[0]
        # 2 lots x 744 h x $2.130 = $3,169.44 notional; 2.5 bp = $0.79236.
        assert (newest["side"], newest["price"], newest["qty"], newest["fee"],
                newest["liquidity"]) == ("buy", "2.130", 2, "0.792360", "taker")
        maker = (await a.result("account.fills", limit=1))[0]
        assert (maker["side"], maker["fee"], maker["liquidity"]) == ("sell", "0.000000", "maker")
        assert [f["trade_id"] for f in await b.result("account.fills", before=3, limit=1)] == [2]
        assert await b.result("account.fills", symbol="H100-2027-04") == []
        assert (await b.error("account.fills", limit=1001))["data"]["reason"] == "invalid_params"
        for ws in (a, b):
            await ws.close()
    run(scenario())


def test_the_forward_curve_lists_every_month_in_delivery_order(live_server):
    async def scenario():
        a = await Ws.open(live_server, "trader-1")
        await a.result("order.place", symbol=SYMBOL, side="buy", qty=1, price="2.090")
        viewer = await Ws.open(live_server)
        curve = await viewer.result("market.curve", gpu_class="H100")
        assert [c["tenor"] for c in curve].count("month") == 12 and len(curve) == 23
        assert [(c["delivery_start"], c["delivery_end"]) for c in curve] == \
            sorted((c["delivery_start"], c["delivery_end"]) for c in curve)
        assert [c["symbol"] for c in curve[1:4]] == ["H100-2027-01", "H100-2027-Q1", "H100-2027"]
        march = next(c for c in curve if c["symbol"] == SYMBOL)
        assert march == {"symbol": SYMBOL, "delivery_start": "2027-03-01", "mark_price": "2.100",
                         "best_bid": "2.090", "best_ask": None, "last_price": None,
                         "tenor": "month", "delivery_end": "2027-04-01"}
        assert (await viewer.error("market.curve", gpu_class="Z1"))["data"]["reason"] == \
            "unknown_gpu_class"
        await a.close()
        await viewer.close()
    run(scenario())


def test_clearing_channels_stream_positions_margin_index_and_curve(live_server):
    """positions and margin start with the current state and follow fills; index.H100 follows
    submissions; curve.H100 follows the book."""
    async def scenario():
        a = await Ws.open(live_server, "trader-1")
        b = await Ws.open(live_server, "trader-2")
        await b.result("subscribe", channels=["positions", "margin", "index.H100", "curve.H100"])
        assert (await b.note("positions"))["data"] == []
        assert (await b.note("margin"))["data"]["collateral"] == "1000000.000000"
        assert (await b.note("index.H100"))["data"]["value"] is None
        assert len((await b.note("curve.H100"))["data"]) == 23
        await a.result("order.place", symbol=SYMBOL, side="sell", qty=3, price="2.105")
        await b.result("order.place", symbol=SYMBOL, side="buy", qty=3, price="2.105")
        assert (await b.note("positions"))["data"][0]["qty"] == 3
        assert (await b.note("margin"))["data"]["maintenance_margin"] != "0.000000"
        while True:
            curve = (await b.note("curve.H100"))["data"]
            march = next(c for c in curve if c["symbol"] == SYMBOL)
            if march["last_price"] == "2.105":
                break
        provider = await Ws.open(live_server, "index-1")
        await provider.result("index.submit", gpu_class="H100", price="2.2", hours=5)
        index = (await b.note("index.H100"))["data"]
        assert (index["gpu_class"], index["value"], index["source"]) == ("H100", None, "none")
        for ws in (a, b, provider):
            await ws.close()
    run(scenario())


def test_a_trusted_provider_feeds_an_external_index_value(live_server):
    """index-3 is trusted: its external value comes first in the fallback order."""
    async def scenario():
        trusted = await Ws.open(live_server, "index-3")
        got = await trusted.result("index.submit", gpu_class="A100", price="1.250", hours=1,
                                   external=True)
        assert got == {"accepted": True, "index_value": "1.250"}
        viewer = await Ws.open(live_server)
        index = await viewer.result("market.index", gpu_class="A100")
        assert (index["value"], index["source"]) == ("1.250", "external")
        other = await Ws.open(live_server, "index-1")
        error = await other.error("index.submit", gpu_class="A100", price="9.000", hours=1,
                                  external=True)
        assert error["data"]["reason"] == "forbidden"
        for ws in (trusted, viewer, other):
            await ws.close()
    run(scenario())


def test_operations_watch_margin_calls_and_liquidations_on_the_admin_channel(live_server):
    """trader-1 buys 5,800 March at 2.100 on $1M; the index providers then report 1.500, the
    marks follow (the maker's 10-lot quotes are deep enough to seed March's basis), and the
    admin channel shows the margin call and each step of the liquidation: a slice into the
    only bid, then pending once no bid is left. Only the admin
    role may subscribe; the insurance fund is funded at start and named for admin.deposit."""
    async def scenario():
        admin = await Ws.open(live_server, "admin")
        assert await admin.result("subscribe", channels=["admin"]) == {"channels": ["admin"]}
        for name in ("trader-1", "viewer-1"):
            other = await Ws.open(live_server, name)
            error = await other.error("subscribe", channels=["admin"])
            assert (error["data"]["reason"], error["data"]["field"]) == ("forbidden", "channels")
            await other.close()
        fund = await admin.result("admin.deposit", account="insurance_fund", amount="1")
        assert fund["collateral"] == "1000001.000000"
        providers = [await Ws.open(live_server, f"index-{k}") for k in (1, 2, 3)]
        for ws in providers:
            await ws.result("index.submit", gpu_class="H100", price="2.100", hours=10)
        maker = await Ws.open(live_server, "maker-1")
        trader = await Ws.open(live_server, "trader-1")
        await maker.result("order.place", symbol=SYMBOL, side="sell", qty=5800, price="2.100")
        await trader.result("order.place", symbol=SYMBOL, side="buy", qty=5800, price="2.100")
        await maker.result("order.place", symbol=SYMBOL, side="buy", qty=10, price="2.090")
        await maker.result("order.place", symbol=SYMBOL, side="sell", qty=10, price="2.110")
        await asyncio.sleep(1.5)               # a mark step seeds March's basis from its book
        for ws in providers:
            await ws.result("index.submit", gpu_class="H100", price="1.500", hours=10)
        seen = []
        while not any(n.get("action") == "pending" for n in seen):
            seen.append((await admin.note("admin"))["data"])
        assert {n["account"] for n in seen} == {"trader-1"}
        assert [n["type"] for n in seen if n["type"] == "margin_call"] == ["margin_call"]
        steps = [(n["action"], n["symbol"], n["qty"]) for n in seen if n["type"] == "liquidation"]
        assert steps[0] == ("reduce", SYMBOL, 5800) and steps[-1] == ("pending", SYMBOL, 5790)
        [pos] = await trader.result("account.positions")
        assert pos["qty"] == 5790
        for ws in (*providers, maker, trader, admin):
            await ws.close()
    run(scenario())
