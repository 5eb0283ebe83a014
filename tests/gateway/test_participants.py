"""The demo's simulated participants: a seeded world, and a live market made over websockets."""
from __future__ import annotations

import asyncio
import datetime
import math
import time
from collections import Counter
from types import SimpleNamespace

from engine.prices import parse_price
from gateway.client.sdk import Client
from gateway.demo.participants import CAST, Demo, Hedger, Listing, MarketMaker, World
from live import TIMEOUT, quoted, run, start_demo, stop_demo, traded, wait_for

LEVELS = {"H100": 2100, "B200": 4200}
FIRST = datetime.date(2027, 1, 1)          # the world's first month
# What a participant may be told "no" for in a busy market, and nothing else.
EXPECTED_REFUSALS = {"post_only_would_take", "no_liquidity", "price_out_of_band",
                     "unknown_order", "order_closed", "self_trade_prevented"}


def path(seed: int, steps: int) -> list[int]:
    world = World(seed, LEVELS, FIRST)
    out = []
    for _ in range(steps):
        world.step()
        out.append(world.fair("H100", "H100-2027-06"))
    return out


def test_the_world_is_a_function_of_the_seed():
    """Two worlds with one seed give the same prices; another seed gives others."""
    assert path(7, 500) == path(7, 500)
    assert path(7, 500) != path(8, 500)


def test_rental_prices_wander_around_their_level_and_the_curve_slopes_down():
    """Over a simulated day the spot keeps near its class's level, and far months are cheaper."""
    for seed in range(3):
        world = World(seed, LEVELS, FIRST)
        logs, slope = [], []
        for _ in range(86_400 // 4):
            world.step()
            logs.append(math.log(world.spot("H100") / LEVELS["H100"]))
            slope.append(world.fair("H100", "H100-2027-12") - world.fair("H100", "H100-2027-01"))
        assert abs(sum(logs) / len(logs)) < 0.02
        assert max(abs(x) for x in logs) < 0.09           # inside the +-10% price band
        assert max(logs) - min(logs) > 0.02                # and it does wander
        assert sum(slope) / len(slope) < 0


def test_quarters_and_years_are_priced_as_their_months_on_average():
    """A quarter's or a year's fair price is its months' averaged by hours (so a strip of
    the months and the quarter agree); a contract listed after the world began, or past its
    horizon, is priced all the same."""
    world = World(7, LEVELS, FIRST)
    for _ in range(100):
        world.step()
    hours = {m: (datetime.date(2027 + m // 12, m % 12 + 1, 1)
                 - datetime.date(2027, m, 1)).days * 24 for m in range(1, 13)}
    month_fair = {m: world.fair("H100", f"H100-2027-{m:02d}") for m in range(1, 13)}
    q2 = sum(month_fair[m] * hours[m] for m in (4, 5, 6)) / sum(hours[m] for m in (4, 5, 6))
    year = sum(month_fair[m] * hours[m] for m in hours) / 8760
    assert abs(world.fair("H100", "H100-2027-Q2") - q2) <= 1        # ticks: rounding only
    assert abs(world.fair("H100", "H100-2027") - year) <= 1
    assert world.fair("H100", "H100-2031") < world.fair("H100", "H100-2028") < month_fair[1]
    assert world.fair("B200", "B200-2027-W14") > 0


def test_a_participant_without_an_account_is_left_out():
    """A data directory from before an account existed runs the demo without that participant."""
    accounts = {r.account: ("key", "secret") for r in CAST if r.account != "lab-1"}
    demo = Demo("ws://127.0.0.1:1/ws", accounts, LEVELS)
    assert demo.missing == ["lab-1"]
    assert "lab-1" not in [r.account for r in demo.cast]


def test_the_demo_makes_a_live_market_over_websockets(live_server):
    """Within seconds every month of every class is quoted both sides, trades print, every
    class has an index; the operator offers and the lab bids icebergs in their classes;
    nothing is refused but what a busy market refuses; stopping cancels the makers' quotes."""
    server = live_server.server
    demo = start_demo(live_server, seed=3, speed=4.0)
    try:
        wait_for(live_server, lambda: quoted(server) and traded(server) > 60)
        time.sleep(2)
    finally:
        stop_demo(live_server, demo)

    def state():
        exchange, house, now = server.venue.exchange, server.house, server.venue.now()
        ids = {a.account: a.account_id for a in server.account_list}
        orders = {name: [(o.symbol, o.side, o.display_qty, o.leaves_qty)
                         for o in exchange.open_orders(ids[name], None)]
                  for name in ("operator-1", "lab-1", "maker-1", "maker-2")}
        index = {c: house.index[c].value(now)[0] for c in house.index}
        return orders, index
    orders, index = live_server.call(state)
    assert all(value is not None for value in index.values()), index
    for name, side, classes, display in (("operator-1", -1, {"H100", "H200"}, 32),
                                         ("lab-1", 1, {"H100", "B200"}, 16)):
        assert orders[name], name
        assert {o[0].split("-")[0] for o in orders[name]} <= classes
        assert all(o[1] == side and o[2] <= display for o in orders[name])
    assert orders["maker-1"] == [] and orders["maker-2"] == []   # cancel-on-disconnect
    refused = {k.split(":", 1)[1] for k in demo.stats if k.startswith("refused:")}
    assert refused <= EXPECTED_REFUSALS, demo.stats
    assert demo.stats["failures"] == 0 and demo.stats["requests"] > 200, demo.stats


def hedger(world: World, side: str, client=None, **kw) -> Hedger:
    demo = SimpleNamespace(world=world, seed=7, speed=1.0, run_tag="t", stats=Counter())
    params = dict(side=side, classes=("H100",), capacity=100, display_qty=10,
                  premium_bps=25, cycle_s=1.0) | kw
    return Hedger(demo, side, client, **params)


def test_a_hedger_hedges_more_of_its_capacity_when_prices_favour_it():
    """An operator sells more forward when prices are rich, a lab buys more when they are
    cheap; neither goes past its capacity, nor to nothing, however far prices go."""
    world = World(7, LEVELS, FIRST)
    listing = Listing("H100-2027-06", "H100", "open", 1, 10**9)
    operator, lab = hedger(world, "sell"), hedger(world, "buy")
    at_value = operator.target(listing), lab.target(listing)
    assert -70 < at_value[0] < -50 and 50 < at_value[1] < 70
    world.shock("H100", 1.03)
    assert operator.target(listing) < at_value[0] and lab.target(listing) < at_value[1]
    world.shock("H100", 0.94 / 1.03)
    assert operator.target(listing) > at_value[0] and lab.target(listing) > at_value[1]
    for factor in (10.0, 0.01):
        world.shock("H100", factor)
        for h in (operator, lab):
            assert 20 <= abs(h.target(listing)) <= 90


def test_a_hedger_works_to_its_target_then_trades_again_when_the_target_moves(live_server):
    """Against a real server: the operator offers its hedge as an iceberg above fair value;
    once it is filled it rests; when prices fall it buys some back below fair value, and when
    they rise again it cancels that bid and sells more."""
    symbol = "H100-2027-06"

    def client(name: str) -> Client:
        account = live_server.account(name)
        return Client(live_server.url, api_key=account.api_key, api_secret=account.api_secret)

    async def scenario() -> None:
        async with client("operator-1") as mine, client("trader-1") as buyer:
            instruments = await buyer.call("market.instruments")
            band = next(i for i in instruments if i["symbol"] == symbol)
            listing = Listing(symbol, "H100", "open", parse_price(band["band_low"]),
                              parse_price(band["band_high"]))
            world = World(7, {"H100": LEVELS["H100"]},
                          min(datetime.date.fromisoformat(i["delivery_start"])
                              for i in instruments))
            operator = hedger(world, "sell", mine, capacity=20, display_qty=4)
            await operator.start()

            async def settled(qty: int) -> None:
                while operator.positions.get(symbol, 0) != qty:
                    await asyncio.sleep(0.02)

            await operator.work(listing)
            target = operator.target(listing)
            [offer] = await mine.orders()
            assert (offer["side"], offer["qty"]) == ("sell", -target)
            assert parse_price(offer["price"]) > world.fair("H100", symbol)
            fill = await buyer.place(symbol, "buy", -target, offer["price"], tif="ioc")
            assert fill["filled_qty"] == -target
            await asyncio.wait_for(settled(target), TIMEOUT)
            await operator.work(listing)
            assert await mine.orders() == []                # hedged: nothing to do

            world.shock("H100", 0.97)
            await operator.work(listing)
            [bid] = await mine.orders()
            assert bid["side"] == "buy" and bid["qty"] == operator.target(listing) - target > 0
            assert parse_price(bid["price"]) < world.fair("H100", symbol)

            world.shock("H100", 1.06 / 0.97)
            await operator.work(listing)                    # the bid is against the hedge now
            assert await mine.orders() == []
            await operator.work(listing)
            [offer] = await mine.orders()
            assert offer["side"] == "sell" and offer["qty"] == target - operator.target(listing)
    run(scenario())


def test_makers_hold_one_order_a_slot_and_quote_again_after_a_reconnect(live_server):
    """However often a re-quote is refused (a quote that would take, a band that moved),
    a maker never has more open orders than quoting slots; when its connection drops the
    server cancels its quotes and, reconnected, it quotes every month both sides again."""
    server = live_server.server
    slots = len(server.feed.symbols) * 2 * MarketMaker.LEVELS
    demo = start_demo(live_server, seed=5, speed=8.0)
    ids = {a.account: a.account_id for a in server.account_list}

    def open_orders(name: str) -> list[tuple[str, int]]:
        return [(o.symbol, o.side) for o in server.venue.exchange.open_orders(ids[name], None)]

    def maker_1():
        return next(p for p in demo.participants if p.account == "maker-1")

    try:
        wait_for(live_server, lambda: quoted(server))
        most = {"maker-1": 0, "maker-2": 0}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for name in most:
                most[name] = max(most[name], len(live_server.call(open_orders, name)))
            time.sleep(0.25)
        assert 0 < most["maker-1"] <= slots and 0 < most["maker-2"] <= slots, most
        assert demo.stats["refused:post_only_would_take"] > 0, demo.stats

        # The curve holds still from here: a quote whose price is unchanged is put up again
        # only because the maker learns from the exchange that it is gone.
        demo.world.step = lambda: None

        def drop() -> None:
            session = next(c for c in server.connections
                           if c.state.account and c.state.account.account == "maker-1")
            session.ws.transport.abort()
        live_server.call(drop)
        wait_for(live_server, lambda: maker_1().client.sessions >= 2)
        every_side = {(s, side) for s in server.feed.symbols for side in (1, -1)}
        wait_for(live_server, lambda: set(open_orders("maker-1")) == every_side)
        assert len(live_server.call(open_orders, "maker-1")) <= slots
    finally:
        stop_demo(live_server, demo)
