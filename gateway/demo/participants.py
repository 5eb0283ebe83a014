"""Simulated participants for `gpux serve --demo`: programs that trade over the public protocol.

Each participant is a ``gateway.client.sdk.Client`` logged in with a demo account
over a real websocket, so the server treats it like any outside program: its
orders pass the rate limits and the margin check, are journaled and are
published. They are the users DESIGN.md §0 describes:

- **market makers** quote three levels a side on every listed contract of every
  class (months, quarters and years, sized in months' worth of GPU-hours) around
  the forward curve, post-only, leaning their quotes against their inventory,
  and re-quote by replacing as the curve moves;
- **takers** cross the spread now and then (IOC and market orders) and rest a
  short-lived GTD order near the touch, leaning against their own positions;
- **an operator** hedges its capacity forward: it keeps a share of 1,024
  contracts a month sold in the listed months of its classes, more when prices are rich, working
  the difference with an iceberg a little above fair value;
- **a lab** hedges its cost the same way from the other side;
- **index providers** submit the rental prices they observe.

What they trade on is a ``World``: a mean-reverting rental price per GPU class
and a forward curve on it, a function of the seed and of the seconds elapsed.
Each participant draws its choices from a generator seeded with the seed and
its name, so a run can be reproduced: with one seed the prices and each
participant's choices are the same; how their requests interleave on the
network, and so the exact fills, is not.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from engine.contracts import delivery_months, parse_symbol
from engine.prices import format_price, parse_price
from gateway.client.sdk import Client, ClientError, ConnectionLost

log = logging.getLogger("gpux.demo")

# -- The world ----------------------------------------------------------------------------

SPOT_HALF_LIFE_S = 1800          # rental prices revert to their class's level over ~30 min
SPOT_VOL_PER_S = 0.0006          # log-price noise a second: ~0.5% a minute, ~1.8% stationary
# Months further out are cheaper (newer GPUs arrive), by up to 7%, most of it in the first
# year or two: 0.6% a month at first, 4.4% at 12 months, 6.6% at 36 (inside the 10% band).
CURVE_DISCOUNT = 0.07
CURVE_MONTHS = 12
MONTH_WIGGLE = 0.004             # each month's own mean-reverting deviation, stationary sd
MONTH_HALF_LIFE_S = 600


HORIZON_MONTHS = 60              # months the world prices from its first (a year past 3 years)
MONTH_HOURS = 730                # an average month's hours: quotes are sized in month-lots


class World:
    """The demo's model of GPU rental prices, stepped once a second.

    Each calendar month of delivery has a forward price: the class's spot, a
    discount growing with how far the month is (newer GPUs arrive before later
    months) and the month's own mean-reverting deviation. A quarter or a year is
    the hours-weighted average of its months, so the curve is free of arbitrage
    between tenors, as a strip would make it.

    Args:
        seed: Everything below is a function of it and of the steps taken.
        levels: Each class's long-run rental price, ticks (its reference price).
        first_month: The first month priced (its first day), the front month at start.
    """

    def __init__(self, seed: int, levels: dict[str, int], first_month: datetime.date) -> None:
        self._rng = random.Random(f"{seed}:world")              # the spot prices
        self._months_rng = random.Random(f"{seed}:world:months")  # the months' deviations
        self.levels = dict(levels)
        self.first = first_month.year * 12 + first_month.month - 1
        self.steps = 0
        self._log_spot = {c: math.log(v) for c, v in self.levels.items()}
        self._wiggle = {(c, self.first + k): self._months_rng.gauss(0.0, MONTH_WIGGLE)
                        for c in sorted(self.levels) for k in range(HORIZON_MONTHS)}

    def step(self) -> None:
        """Let one second pass."""
        self.steps += 1
        rng = self._rng
        pull = 1 - 0.5 ** (1 / SPOT_HALF_LIFE_S)
        for c in sorted(self._log_spot):
            x = self._log_spot[c]
            self._log_spot[c] = x + pull * (math.log(self.levels[c]) - x) + rng.gauss(
                0.0, SPOT_VOL_PER_S)
        keep = 0.5 ** (1 / MONTH_HALF_LIFE_S)
        shock = MONTH_WIGGLE * math.sqrt(1 - keep * keep)
        months = self._months_rng
        for key in sorted(self._wiggle):
            self._wiggle[key] = keep * self._wiggle[key] + months.gauss(0.0, shock)

    def shock(self, gpu_class: str, factor: float) -> None:
        """Move a class's rental price by ``factor`` at once (an outage, a new generation
        arriving): for scenarios and tests; it reverts from there as ever."""
        self._log_spot[gpu_class] += math.log(factor)

    def spot(self, gpu_class: str) -> float:
        """The rental price of a class now, USD-ticks (a float: providers add their noise)."""
        return math.exp(self._log_spot[gpu_class])

    def fair(self, gpu_class: str, symbol: str) -> int:
        """The forward price of a listed contract, ticks."""
        discounted, wiggle = self._curve(gpu_class, symbol)
        return max(1, round(self.spot(gpu_class) * (discounted + wiggle)))

    def richness(self, gpu_class: str, symbol: str) -> float:
        """How far a contract's forward price is above its long-run value: 0.02 is 2% rich."""
        discounted, wiggle = self._curve(gpu_class, symbol)
        return (self.spot(gpu_class) / self.levels[gpu_class]
                * (discounted + wiggle) / discounted) - 1

    def _curve(self, gpu_class: str, symbol: str) -> tuple[float, float]:
        """(the long-run share of the spot, the deviation) of a contract, averaged over its
        months by hours; months past the horizon have no deviation of their own."""
        period = parse_symbol(symbol).period
        discounted = wiggle = 0.0
        for first, hours in delivery_months(period.start, period.end):
            month = first.year * 12 + first.month - 1
            ahead = max(0, month - self.first)
            discounted += hours * (1 - CURVE_DISCOUNT * (1 - math.exp(-ahead / CURVE_MONTHS)))
            wiggle += hours * self._wiggle.get((gpu_class, month), 0.0)
        return discounted / period.hours, wiggle / period.hours


# -- What every participant shares --------------------------------------------------------

@dataclass
class Listing:
    """One instrument as market.instruments says, refreshed now and then."""
    symbol: str
    gpu_class: str
    status: str
    band_low: int
    band_high: int
    tenor: str = "month"
    hours: int = MONTH_HOURS

    def clamp(self, price: int) -> int:
        return min(max(price, self.band_low), self.band_high)

    def lots(self, month_lots: int) -> int:
        """So many months' worth of GPU-hours in this contract's lots (at least 1): a year's
        lot is twelve months' hours, so a participant trades fewer of them."""
        return max(1, round(month_lots * MONTH_HOURS / self.hours))


class Participant:
    """A client with a name, a generator of its own, and the market's listing.

    Subclasses implement ``run`` (a loop until cancelled) and may name
    channels to subscribe to. A refused request is counted and logged; it never
    stops the participant.
    """

    channels: tuple[str, ...] = ()

    def __init__(self, demo: Demo, account: str, client: Client) -> None:
        self.demo = demo
        self.world = demo.world
        self.account = account
        self.client = client
        self.rng = random.Random(f"{demo.seed}:{account}")
        self.positions: dict[str, int] = {}
        self._ids = 0

    async def start(self) -> None:
        if "positions" in self.channels:
            self.client.on("positions", self._on_positions)
        if self.channels:
            await self.client.subscribe(*self.channels)

    def _on_positions(self, channel: str, data: list[dict]) -> None:
        self.positions = {p["symbol"]: p["qty"] for p in data}

    def next_id(self, tag: str) -> str:
        """A client_order_id of this participant's own: a resend after a reconnect is safe."""
        self._ids += 1
        return f"{self.demo.run_tag}-{tag}-{self._ids}"

    async def request(self, coro) -> dict | None:
        """Await a request; a refusal or a lost connection is counted, not raised."""
        try:
            result = await coro
        except ClientError as exc:
            self.demo.stats[f"refused:{exc.reason}"] += 1
            log.debug("%s: %s", self.account, exc)
            if exc.reason == "rate_limited":
                await asyncio.sleep((exc.data.get("retry_after_ms") or 1000) / 1000)
            return None
        self.demo.stats["requests"] += 1
        return result

    async def pause(self, mean_s: float) -> None:
        """Wait an exponentially distributed time (a Poisson process of decisions)."""
        await asyncio.sleep(self.rng.expovariate(self.demo.speed / mean_s))

    def tradable(self, classes: Iterable[str] | None = None,
                 tenors: Iterable[str] | None = None) -> list[Listing]:
        """The open contracts (of these classes and tenors), in delivery order per class."""
        classes = None if classes is None else set(classes)
        tenors = None if tenors is None else set(tenors)
        return [x for x in self.demo.listings.values()
                if x.status == "open" and (classes is None or x.gpu_class in classes)
                and (tenors is None or x.tenor in tenors)]

    def fair(self, listing: Listing) -> int:
        return self.world.fair(listing.gpu_class, listing.symbol)


# -- Market makers ------------------------------------------------------------------------

@dataclass
class MarketMaker(Participant):
    """Quotes LEVELS a side on every open month, re-quoting one symbol at a time.

    The spread is ``spread_bps`` of fair value each side (at least 2 ticks),
    each further level ``step_bps`` out; quotes move against inventory by
    ``skew_bps`` per ``lots_per_skew`` lots held. Each symbol's quotes are one
    ``order.mass_quote``: the server keeps the slots, replaces what moved in
    place and leaves the rest; its quotes are post-only (a quote that would take
    is refused and tried again next round) and cancelled by the server if this
    session drops.
    """

    LEVELS = 3
    channels = ("positions",)

    def __init__(self, demo: Demo, account: str, client: Client, *, spread_bps: int,
                 step_bps: int, size: int, cycle_s: float, skew_bps: int = 10,
                 lots_per_skew: int = 50) -> None:
        super().__init__(demo, account, client)
        self.spread_bps, self.step_bps, self.size = spread_bps, step_bps, size
        self.cycle_s = cycle_s
        self.skew_bps, self.lots_per_skew = skew_bps, lots_per_skew
        # (symbol, side, level) -> (price, qty) last asked: a quote keeps its size until it
        # moves, so an unmoved quote is left as it is (and keeps its place in the queue).
        self.shown: dict[tuple[str, int, int], tuple[int, int]] = {}

    async def start(self) -> None:
        await self.request(self.client.set_cancel_on_disconnect(True))
        await self.request(self.client.cancel_all())     # what an earlier run left
        await super().start()

    def targets(self, listing: Listing) -> list[tuple[int, int, int, int]]:
        """(side, level, price, qty) of the quotes this symbol should have now."""
        fair = self.fair(listing)
        held = self.positions.get(listing.symbol, 0)
        skew = round(fair * self.skew_bps / 10_000 * held / self.lots_per_skew)
        half = max(2, round(fair * self.spread_bps / 10_000))
        step = max(1, round(fair * self.step_bps / 10_000))
        out = []
        for level in range(self.LEVELS):
            for side in (1, -1):           # 1 buy, -1 sell
                price = listing.clamp(fair - skew - side * (half + level * step))
                key = (listing.symbol, side, level)
                shown = self.shown.get(key)
                if shown is None or shown[0] != price:
                    shown = self.shown[key] = (price, listing.lots(
                        self.size * (level + 1) + self.rng.randrange(self.size)))
                out.append((side, level, price, shown[1]))
        return out

    async def run(self) -> None:
        opening = True          # the first round quotes everything at once: a market at start
        while True:
            listings = self.tradable()
            if not listings:
                await asyncio.sleep(1)
                continue
            for listing in listings:
                await self.requote(listing)
                if not opening:
                    await asyncio.sleep(self.cycle_s / len(listings) / self.demo.speed)
            opening = False

    async def requote(self, listing: Listing) -> None:
        slots = [{"symbol": listing.symbol, "side": "buy" if side == 1 else "sell",
                  "level": level, "price": format_price(price), "qty": qty}
                 for side, level, price, qty in self.targets(listing)]
        results = await self.request(self.client.mass_quote(slots))
        for result in results or ():
            if result["error"] is not None:
                self.demo.stats[f"refused:{result['error']['data']['reason']}"] += 1


# -- Takers -------------------------------------------------------------------------------

class Taker(Participant):
    """Crosses the spread now and then, front months most; leans against its position."""

    channels = ("positions",)
    MAX_POSITION = 150

    def __init__(self, demo: Demo, account: str, client: Client, *, every_s: float) -> None:
        super().__init__(demo, account, client)
        self.every_s = every_s

    async def run(self) -> None:
        while True:
            await self.pause(self.every_s)
            listings = self.tradable()
            if listings:
                await self.act(listings)

    async def act(self, listings: list[Listing]) -> None:
        rng = self.rng
        months: dict[str, list[Listing]] = {}
        for x in listings:
            months.setdefault(x.gpu_class, []).append(x)
        gpu_class = rng.choice(sorted(months))
        chosen = months[gpu_class]
        listing = rng.choices(chosen, weights=[1 / (1 + k / 3) for k in range(len(chosen))])[0]
        held = self.positions.get(listing.symbol, 0)
        if abs(held) > self.MAX_POSITION:
            side = "sell" if held > 0 else "buy"
        else:
            side = rng.choice(("buy", "sell"))
        sign = 1 if side == "buy" else -1
        qty = listing.lots(min(40, 1 + int(rng.expovariate(1 / 6))))
        fair = self.fair(listing)
        roll = rng.random()
        coid = self.next_id(listing.symbol)
        if roll < 0.65:             # take what is there up to a limit
            price = listing.clamp(fair + sign * max(3, round(fair * 0.004)))
            await self.request(self.client.place(listing.symbol, side, qty, format_price(price),
                                                 tif="ioc", client_order_id=coid))
        elif roll < 0.80:
            await self.request(self.client.place(listing.symbol, side, qty,
                                                 order_type="market", tif="ioc",
                                                 client_order_id=coid))
        else:                       # rest near the touch for a minute
            price = listing.clamp(fair - sign * rng.randint(1, 4))
            expire_ms = await self.server_ms() + 60_000
            await self.request(self.client.place(listing.symbol, side, qty, format_price(price),
                                                 tif="gtd", expire_at=expire_ms,
                                                 client_order_id=coid))

    async def server_ms(self) -> int:
        """The exchange's clock (GTD expiry is on it)."""
        answer = await self.request(self.client.call("session.test"))
        return answer["server_time"] if answer else 0


# -- Operator and lab: hedges worked with icebergs ---------------------------------------

class Hedger(Participant):
    """Keeps a share of its monthly capacity hedged forward in each month of its classes,
    working the difference with one iceberg a month, ``premium_bps`` better than fair value
    for itself.

    ``side`` is "sell" for an operator locking in revenue, "buy" for a lab fixing cost.
    The share is ``hedge_ratio`` when a month trades at its long-run value and moves by
    ``sensitivity`` times its premium over that value, the way a hedging programme does:
    an operator sells more forward when prices are rich and buys some back when they are
    cheap; a lab the other way round. So both keep trading for as long as prices move,
    and their positions stay within their capacity.
    """

    channels = ("orders", "positions")
    RATIO_LIMITS = (0.2, 0.9)

    def __init__(self, demo: Demo, account: str, client: Client, *, side: str,
                 classes: tuple[str, ...], capacity: int, display_qty: int, premium_bps: int,
                 cycle_s: float, hedge_ratio: float = 0.6, sensitivity: float = 10.0) -> None:
        super().__init__(demo, account, client)
        self.side, self.classes = side, classes
        self.sign = -1 if side == "sell" else 1
        self.capacity, self.display_qty = capacity, display_qty
        self.premium_bps, self.cycle_s = premium_bps, cycle_s
        self.hedge_ratio, self.sensitivity = hedge_ratio, sensitivity
        self.working: dict[str, dict] = {}      # symbol -> its iceberg as last told

    async def start(self) -> None:
        self.client.on("orders", self._on_order)
        await super().start()

    def _on_order(self, channel: str, order: dict) -> None:
        known = self.working.get(order["symbol"])
        if known is not None and known["order_id"] == order["order_id"]:
            self.working[order["symbol"]] = order

    def target(self, listing: Listing) -> int:
        """The position this month should have now: signed contracts."""
        rich = self.world.richness(listing.gpu_class, listing.symbol)
        low, high = self.RATIO_LIMITS
        ratio = min(high, max(low, self.hedge_ratio - self.sign * self.sensitivity * rich))
        return self.sign * round(ratio * self.capacity)

    def price(self, listing: Listing, sign: int) -> int:
        """A limit ``premium_bps`` better than fair value for a buy (+1) or a sell (-1)."""
        fair = self.fair(listing)
        return listing.clamp(fair - sign * max(2, round(fair * self.premium_bps / 10_000)))

    async def run(self) -> None:
        while True:
            listings = self.tradable(self.classes, ("month",))
            if not listings:
                await asyncio.sleep(1)
                continue
            await self.reconcile()
            for listing in listings:
                await self.work(listing)
                await asyncio.sleep(self.cycle_s / len(listings) / self.demo.speed)

    async def reconcile(self) -> None:
        """Take the icebergs from the exchange (after a restart or a reconnect the last word
        may be missing); a second one in a month is cancelled."""
        resting = await self.request(self.client.orders())
        if resting is None:
            return
        self.working = {}
        for order in resting:
            if order["symbol"] in self.working:
                await self.request(self.client.cancel(order["order_id"]))
            else:
                self.working[order["symbol"]] = order

    async def work(self, listing: Listing) -> None:
        symbol = listing.symbol
        gap = self.target(listing) - self.positions.get(symbol, 0)     # > 0: buy
        sign = 1 if gap > 0 else -1
        order = self.working.get(symbol)
        if order is not None and order["status"] in ("open", "partially_filled"):
            surplus = order["remaining_qty"] - abs(gap)
            if (1 if order["side"] == "buy" else -1) != sign or surplus > self.display_qty:
                await self.amend(symbol, self.client.cancel(order["order_id"]))
            elif parse_price(order["price"]) != (price := self.price(listing, sign)):
                await self.amend(symbol, self.client.replace(
                    order["order_id"], price=format_price(price)))
            return
        if abs(gap) < self.display_qty:
            return                   # near enough: not worth an order
        qty = abs(gap)
        result = await self.request(self.client.place(
            symbol, "buy" if sign > 0 else "sell", qty, format_price(self.price(listing, sign)),
            display_qty=min(self.display_qty, qty), client_order_id=self.next_id(symbol)))
        if result is not None:
            self.working[symbol] = result

    async def amend(self, symbol: str, coro) -> None:
        """Send a cancel or a replace of the month's iceberg; if refused, ask how it stands."""
        result = await self.request(coro)
        if result is None:
            result = await self.request(self.client.get_order(self.working[symbol]["order_id"]))
        if result is not None:
            self.working[symbol] = result


# -- Index providers ----------------------------------------------------------------------

class IndexProvider(Participant):
    """Submits the rental prices it observes: the world's spot with its own bias and noise,
    for GPU counts and durations of real rentals."""

    def __init__(self, demo: Demo, account: str, client: Client, *, bias_bps: int,
                 noise_bps: int, every_s: float) -> None:
        super().__init__(demo, account, client)
        self.bias_bps, self.noise_bps, self.every_s = bias_bps, noise_bps, every_s

    async def run(self) -> None:
        while True:
            for gpu_class in sorted(self.world.levels):
                await self.observe(gpu_class)
            await self.pause(self.every_s)

    async def observe(self, gpu_class: str) -> None:
        rng = self.rng
        factor = 1 + (self.bias_bps + rng.gauss(0, self.noise_bps)) / 10_000
        price = max(1, round(self.world.spot(gpu_class) * factor))
        gpus = rng.choice((8, 16, 32, 64, 128, 256, 512))
        hours = gpus * rng.choice((1, 4, 12, 24, 72, 168))
        await self.request(self.client.call("index.submit", gpu_class=gpu_class,
                                            price=format_price(price), hours=hours))


# -- The cast -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Role:
    """Who plays which participant, with what parameters."""
    account: str
    kind: type[Participant]
    params: dict = field(default_factory=dict)


CAST = (
    Role("index-1", IndexProvider, {"bias_bps": 60, "noise_bps": 150, "every_s": 4.0}),
    Role("index-2", IndexProvider, {"bias_bps": -50, "noise_bps": 150, "every_s": 5.0}),
    Role("index-3", IndexProvider, {"bias_bps": 0, "noise_bps": 100, "every_s": 6.0}),
    Role("maker-1", MarketMaker, {"spread_bps": 12, "step_bps": 10, "size": 5,
                                  "cycle_s": 8.0}),
    Role("maker-2", MarketMaker, {"spread_bps": 20, "step_bps": 15, "size": 10,
                                  "cycle_s": 13.0}),
    Role("operator-1", Hedger, {"side": "sell", "classes": ("H100", "H200"),
                                "capacity": 1024, "display_qty": 32, "premium_bps": 25,
                                "cycle_s": 30.0}),
    Role("lab-1", Hedger, {"side": "buy", "classes": ("H100", "B200"), "capacity": 512,
                           "display_qty": 16, "premium_bps": 25, "cycle_s": 30.0}),
    Role("taker-1", Taker, {"every_s": 1.5}),
    Role("taker-2", Taker, {"every_s": 2.5}),
)


class Demo:
    """The simulated participants of a demo market, run on the caller's event loop.

    Args:
        url: The exchange's websocket endpoint.
        accounts: name -> (api_key, api_secret); a participant whose account is
            missing (a data directory from before it existed) is left out.
        levels: Each class's long-run rental price, ticks.
        seed: Seeds the world and every participant.
        speed: Decisions per second are multiplied by this (tests run faster).
    """

    def __init__(self, url: str, accounts: dict[str, tuple[str, str]], levels: dict[str, int],
                 *, seed: int = 7, speed: float = 1.0, cast: tuple[Role, ...] = CAST) -> None:
        self.url = url
        self.accounts = accounts
        self.levels = levels
        self.seed = seed
        self.speed = speed
        self.cast = [r for r in cast if r.account in accounts]
        self.missing = [r.account for r in cast if r.account not in accounts]
        self.stats: Counter[str] = Counter()
        self.listings: dict[str, Listing] = {}
        self.participants: list[Participant] = []
        self.world: World | None = None
        self.run_tag = ""
        self._tasks: list[asyncio.Task] = []
        self._listing_client: Client | None = None

    async def start(self) -> None:
        """Connect every participant, learn the listing, and set them going."""
        self._listing_client = await Client(self.url).connect()
        listed = await self.refresh_listing()
        classes = {x.gpu_class for x in self.listings.values()}
        front = min((datetime.date.fromisoformat(i["delivery_start"]) for i in listed),
                    default=datetime.date.today())
        self.world = World(self.seed, {c: v for c, v in self.levels.items() if c in classes},
                           front.replace(day=1))
        # Client order ids must not repeat those of an earlier run on the same data.
        now = await self._listing_client.call("session.test")
        self.run_tag = format(now["server_time"] % 16**8, "08x")
        for role in self.cast:
            key, secret = self.accounts[role.account]
            client = await Client(self.url, api_key=key, api_secret=secret).connect()
            participant = role.kind(self, role.account, client, **role.params)
            self.participants.append(participant)
            await participant.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._step_world()), loop.create_task(self._relist())]
        self._tasks += [loop.create_task(self._guard(p)) for p in self.participants]

    async def stop(self) -> None:
        """Stop every participant and close its session (the makers' quotes are cancelled)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        clients = [p.client for p in self.participants] + [self._listing_client]
        await asyncio.gather(*(c.close() for c in clients if c is not None),
                             return_exceptions=True)

    async def refresh_listing(self) -> list[dict]:
        """Take the listing as it is now: new contracts, statuses and bands; gone ones go."""
        listed = await self._listing_client.call("market.instruments")
        self.listings = {item["symbol"]: Listing(
            item["symbol"], item["gpu_class"], item["status"], parse_price(item["band_low"]),
            parse_price(item["band_high"]), item.get("tenor", "month"),
            item["contract_hours"]) for item in listed}
        return listed

    async def _guard(self, participant: Participant) -> None:
        """Run a participant; an unexpected failure is logged and it starts again."""
        while True:
            try:
                await participant.run()
            except asyncio.CancelledError:
                raise
            except ConnectionLost:
                await asyncio.sleep(1)
            except Exception:
                self.stats["failures"] += 1
                log.exception("demo participant %s failed; restarting it", participant.account)
                await asyncio.sleep(1)

    async def _step_world(self) -> None:
        while True:
            await asyncio.sleep(1 / self.speed)
            self.world.step()

    async def _relist(self) -> None:
        """Follow the listing: bands (they move with trades and settlements), statuses, and
        what the rolling listing adds and removes."""
        while True:
            await asyncio.sleep(5 / self.speed)
            try:
                await self.refresh_listing()
            except ClientError as exc:
                log.debug("demo: market.instruments: %s", exc)


def levels_of(instruments) -> dict[str, int]:
    """Each class's long-run rental price: its products' reference price, ticks."""
    out: dict[str, int] = {}
    for inst in instruments:
        out.setdefault(inst.gpu_class, inst.reference_price)
    return out

