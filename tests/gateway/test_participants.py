"""The demo's simulated participants: a seeded world, and a live market made over websockets."""
from __future__ import annotations

import math
import time

from gateway.participants import CAST, Demo, World
from live import quoted, start_demo, stop_demo, traded, wait_for

LEVELS = {"H100": 2100, "B200": 4200}
MONTHS = {c: [f"{c}-2027-{m:02d}" for m in range(1, 13)] for c in LEVELS}
# What a participant may be told "no" for in a busy market, and nothing else.
EXPECTED_REFUSALS = {"post_only_would_take", "no_liquidity", "price_out_of_band",
                     "unknown_order", "order_closed", "self_trade_prevented"}


def path(seed: int, steps: int) -> list[int]:
    world = World(seed, LEVELS, MONTHS)
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
        world = World(seed, LEVELS, MONTHS)
        logs, slope = [], []
        for _ in range(86_400 // 4):
            world.step()
            logs.append(math.log(world.spot("H100") / LEVELS["H100"]))
            slope.append(world.fair("H100", "H100-2027-12") - world.fair("H100", "H100-2027-01"))
        assert abs(sum(logs) / len(logs)) < 0.02
        assert max(abs(x) for x in logs) < 0.09           # inside the +-10% price band
        assert max(logs) - min(logs) > 0.02                # and it does wander
        assert sum(slope) / len(slope) < 0


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

