"""`gpux demo`: the default market, traded by simulated participants, through the real engine.

The participants are the ones DESIGN.md §0 describes: a market maker quoting
every listed month around a drifting fair value and re-quoting as it moves, an
operator selling capacity forward with icebergs, a lab buying forward, and
traders taking liquidity with IOC, market and stop orders. The commands go
through ``Exchange.process`` exactly as the gateway will send them; the demo
prints the forward curve, a ladder, what happened and how fast.
"""
from __future__ import annotations

import datetime
import random
import time
from collections import Counter

from engine.contracts import Instrument, list_instruments, load_products
from engine.exchange import Exchange
from engine.messages import (
    CancelOrder, OrderType, PlaceOrder, ReplaceOrder, SelfTradePrevention, Side, TimeInForce,
)
from engine.prices import format_price

MAKER, OPERATOR, LAB = 1, 2, 3
TRADERS = range(10, 20)
QUOTE_LEVELS = 5


def commands(exchange: Exchange, instruments: list[Instrument], n: int, seed: int,
             start_ns: int):
    """Yield about ``n`` commands of a seeded market; ``ts_ns`` advances 1 ms per command.

    The participants watch the exchange between commands, as programs watching
    their fills would: the maker names its quotes by client_order_id and
    re-quotes the ones that filled, stop traders place stops beyond the last
    trade.
    """
    rng = random.Random(seed)
    fair = {i.symbol: i.reference_price for i in instruments}
    quotes = {i.symbol: [f"q-{i.symbol}-{k}-0" for k in range(2 * QUOTE_LEVELS)]
              for i in instruments}
    clock = iter(range(start_ns + 1_000_000, 2**63, 1_000_000))

    # Opening: the maker quotes a ladder on every instrument; the operator
    # offers capacity forward as an iceberg; the lab bids for it the same way.
    for inst in instruments:
        sym, mid = inst.symbol, fair[inst.symbol]
        for k, coid in enumerate(quotes[sym]):
            side = Side.BUY if k % 2 == 0 else Side.SELL
            yield PlaceOrder(ts_ns=next(clock), account_id=MAKER, symbol=sym, side=side,
                             qty=5 * (k // 2 + 1), price=mid - side * (3 * (k // 2) + 2),
                             client_order_id=coid)
        yield PlaceOrder(ts_ns=next(clock), account_id=OPERATOR, symbol=sym, side=Side.SELL,
                         qty=1024, price=mid + 25, display_qty=32, client_order_id=f"op-{sym}")
        yield PlaceOrder(ts_ns=next(clock), account_id=LAB, symbol=sym, side=Side.BUY,
                         qty=256, price=mid - 30, display_qty=16)
    for _ in range(n - len(instruments) * (2 * QUOTE_LEVELS + 2)):
        inst = rng.choice(instruments)
        sym = inst.symbol
        fair[sym] += rng.choice((-2, -1, 0, 0, 1, 2))
        mid = fair[sym]
        roll = rng.random()
        k = rng.randrange(2 * QUOTE_LEVELS)
        quote_side = Side.BUY if k % 2 == 0 else Side.SELL
        live = exchange.order_by_client_id(MAKER, quotes[sym][k])
        if live is None or live.leaves_qty == 0:
            # A quote filled (or never made it): quote that slot afresh, post-only.
            name, generation = quotes[sym][k].rsplit("-", 1)
            quotes[sym][k] = f"{name}-{int(generation) + 1}"
            yield PlaceOrder(ts_ns=next(clock), account_id=MAKER, symbol=sym, side=quote_side,
                             qty=rng.randint(5, 25), price=mid - quote_side * rng.randint(2, 8),
                             post_only=True, client_order_id=quotes[sym][k],
                             stp=SelfTradePrevention.CANCEL_OLDEST)
        elif roll < 0.55:
            # The maker moves one of its quotes to follow the fair value.
            yield ReplaceOrder(ts_ns=next(clock), account_id=MAKER, client_order_id=quotes[sym][k],
                               price=mid - quote_side * rng.randint(2, 3 * QUOTE_LEVELS + 2))
        elif roll < 0.60:
            yield CancelOrder(ts_ns=next(clock), account_id=MAKER, client_order_id=quotes[sym][k])
        elif roll < 0.80:
            side = rng.choice((Side.BUY, Side.SELL))
            yield PlaceOrder(ts_ns=next(clock), account_id=rng.choice(TRADERS), symbol=sym,
                             side=side, qty=rng.randint(1, 12),
                             price=mid + side * rng.randint(0, 6), tif=TimeInForce.IOC)
        elif roll < 0.90:
            yield PlaceOrder(ts_ns=next(clock), account_id=rng.choice(TRADERS), symbol=sym,
                             side=rng.choice((Side.BUY, Side.SELL)), qty=rng.randint(1, 6),
                             order_type=OrderType.MARKET, tif=TimeInForce.IOC)
        else:
            side = rng.choice((Side.BUY, Side.SELL))
            last = exchange.markets[sym].last_price or mid
            yield PlaceOrder(ts_ns=next(clock), account_id=rng.choice(TRADERS), symbol=sym,
                             side=side, qty=rng.randint(1, 4), order_type=OrderType.STOP_MARKET,
                             stop_price=last + side * rng.randint(4, 12))


def run(n: int = 200_000, seed: int = 7, as_of: datetime.date | None = None,
        config: str | None = None) -> None:
    """Run the demo market and print what happened."""
    as_of = as_of or datetime.datetime.now(datetime.timezone.utc).date()
    instruments = list_instruments(load_products(config), as_of)
    exchange = Exchange(instruments)
    start_ns = int(datetime.datetime.combine(as_of, datetime.time(9),
                                             datetime.timezone.utc).timestamp()) * 10**9
    counts: Counter[str] = Counter()
    sent = 0
    elapsed_ns = 0
    for cmd in commands(exchange, instruments, n, seed, start_ns):
        began = time.perf_counter_ns()
        events = exchange.process(cmd)
        elapsed_ns += time.perf_counter_ns() - began
        sent += 1
        for event in events:
            name = type(event).__name__
            if name == "OrderRejected":
                name = f"OrderRejected({event.reason.name.lower()})"
            counts[name] += 1
    elapsed = elapsed_ns / 1e9

    classes = sorted({i.gpu_class for i in instruments})
    tenors = Counter(i.kind for i in instruments if i.gpu_class == classes[0])
    each = ", ".join(f"{n} {kind}s" for kind, n in tenors.items())
    print(f"gpux demo: {len(instruments)} instruments listed as of {as_of} "
          f"({', '.join(classes)}; {each} in {classes[0]})\n")
    for gpu_class in classes:
        print(f"{gpu_class} forward curve   best bid   best ask       last   volume")
        for inst in instruments:
            if inst.gpu_class != gpu_class:
                continue
            m = exchange.markets[inst.symbol]
            bid, ask = m.book.best_bid(), m.book.best_ask()
            print(f"  {inst.symbol:<14} {_px(bid):>9}  {_px(ask):>9}  {_px(m.last_price):>9}"
                  f"  {m.volume:>7}")
        print()
    front = next((i for i in instruments if i.gpu_class == "H100"), instruments[0])
    book = exchange.markets[front.symbol].book
    print(f"{front.symbol} book: visible qty (orders)")
    print(f"{'bid':>12}  {'price':>7}  ask")
    for price, qty, orders in reversed(book.depth(-1, 5)):
        print(f"{'':>12}  {format_price(price):>7}  {qty} ({orders})")
    for price, qty, orders in book.depth(1, 5):
        print(f"{f'{qty} ({orders})':>12}  {format_price(price):>7}")
    print(f"\n{sent:,} commands processed in {elapsed:.2f} s: "
          f"{sent / elapsed:,.0f} commands/s through Exchange.process")
    print("events: " + ", ".join(f"{k} {v:,}" for k, v in counts.most_common()))


def _px(ticks: int | None) -> str:
    return "-" if ticks is None else format_price(ticks)
