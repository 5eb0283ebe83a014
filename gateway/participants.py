"""Simulated participants for `gpux serve --demo`: programs that trade over the public protocol.

Each participant is a ``gateway.client.Client`` logged in with a demo account
over a real websocket, so the server treats it like any outside program: its
orders pass the rate limits and the margin check, are journaled and are
published. They are the users DESIGN.md §0 describes:

- **market makers** quote three levels a side on every listed month of every
  class around the forward curve, post-only, leaning their quotes against
  their inventory, and re-quote by replacing as the curve moves;
- **takers** cross the spread now and then (IOC and market orders) and rest a
  short-lived GTD order near the touch, leaning against their own positions;
- **an operator** sells capacity forward: an iceberg of 1,024 contracts a
  month in its classes, a little above fair value, following it;
- **a lab** buys forward the same way from the other side;
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
import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from engine.prices import format_price, parse_price
from gateway.client import Client, ClientError, ConnectionLost

log = logging.getLogger("gpux.demo")

# -- The world ----------------------------------------------------------------------------

SPOT_HALF_LIFE_S = 1800          # rental prices revert to their class's level over ~30 min
SPOT_VOL_PER_S = 0.0006          # log-price noise a second: ~0.5% a minute, ~1.8% stationary
MONTHLY_DISCOUNT = 0.005         # each month further out is 0.5% cheaper (newer GPUs arrive)
MONTH_WIGGLE = 0.004             # each month's own mean-reverting deviation, stationary sd
MONTH_HALF_LIFE_S = 600


class World:
    """The demo's model of GPU rental prices, stepped once a second.

    Args:
        seed: Everything below is a function of it and of the steps taken.
        levels: Each class's long-run rental price, ticks (its reference price).
        months: Each class's listed symbols, in delivery order.
    """

    def __init__(self, seed: int, levels: dict[str, int], months: dict[str, list[str]]) -> None:
        self._rng = random.Random(f"{seed}:world")
        self.levels = dict(levels)
        self.months = {c: list(s) for c, s in months.items()}
        self.steps = 0
        self._log_spot = {c: math.log(v) for c, v in self.levels.items()}
        self._wiggle = {s: self._rng.gauss(0.0, MONTH_WIGGLE)
                        for c in sorted(self.months) for s in self.months[c]}

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
        for s in sorted(self._wiggle):
            self._wiggle[s] = keep * self._wiggle[s] + rng.gauss(0.0, shock)

    def spot(self, gpu_class: str) -> float:
        """The rental price of a class now, USD-ticks (a float: providers add their noise)."""
        return math.exp(self._log_spot[gpu_class])

    def fair(self, gpu_class: str, symbol: str) -> int:
        """The forward price of a listed month, ticks."""
        ahead = self.months[gpu_class].index(symbol)
        factor = 1 - MONTHLY_DISCOUNT * ahead + self._wiggle[symbol]
        return max(1, round(self.spot(gpu_class) * factor))


# -- What every participant shares --------------------------------------------------------

@dataclass
class Listing:
    """One instrument as market.instruments says, refreshed now and then."""
    symbol: str
    gpu_class: str
    status: str
    band_low: int
    band_high: int

    def clamp(self, price: int) -> int:
        return min(max(price, self.band_low), self.band_high)


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

    def tradable(self, classes: Iterable[str] | None = None) -> list[Listing]:
        wanted = None if classes is None else set(classes)
        return [x for x in self.demo.listings.values()
                if x.status == "open" and (wanted is None or x.gpu_class in wanted)]

    def fair(self, listing: Listing) -> int:
        return self.world.fair(listing.gpu_class, listing.symbol)


# -- Market makers ------------------------------------------------------------------------

@dataclass
class Quote:
    """One quoting slot: which order holds it, at what price, whether it is live."""
    client_order_id: str | None = None
    price: int | None = None
    live: bool = False


class MarketMaker(Participant):
    """Quotes LEVELS a side on every open month, re-quoting one symbol at a time.

    The spread is ``spread_bps`` of fair value each side (at least 2 ticks),
    each further level ``step_bps`` out; quotes move against inventory by
    ``skew_bps`` per ``lots_per_skew`` lots held. Orders are post-only
    (a quote that would take is refused and tried again next round) and
    cancelled by the server if this session drops.
    """

    LEVELS = 3
    channels = ("orders", "positions")

    def __init__(self, demo: Demo, account: str, client: Client, *, spread_bps: int,
                 step_bps: int, size: int, cycle_s: float, skew_bps: int = 10,
                 lots_per_skew: int = 50) -> None:
        super().__init__(demo, account, client)
        self.spread_bps, self.step_bps, self.size = spread_bps, step_bps, size
        self.cycle_s = cycle_s
        self.skew_bps, self.lots_per_skew = skew_bps, lots_per_skew
        self.quotes: dict[tuple[str, int, int], Quote] = {}     # (symbol, side, level)
        self._by_id: dict[str, Quote] = {}

    async def start(self) -> None:
        self.client.on("orders", self._on_order)
        await self.request(self.client.set_cancel_on_disconnect(True))
        await super().start()

    def _on_order(self, channel: str, order: dict) -> None:
        quote = self._by_id.get(order.get("client_order_id"))
        if quote is not None and order["status"] in ("filled", "cancelled"):
            quote.live = False

    def targets(self, listing: Listing) -> list[tuple[int, int, int, int]]:
        """(side, level, price, qty) of the quotes this symbol should have now."""
        fair = self.fair(listing)
        held = self.positions.get(listing.symbol, 0)
        skew = round(fair * self.skew_bps / 10_000 * held / self.lots_per_skew)
        half = max(2, round(fair * self.spread_bps / 10_000))
        step = max(1, round(fair * self.step_bps / 10_000))
        out = []
        for level in range(self.LEVELS):
            qty = self.size * (level + 1) + self.rng.randrange(self.size)
            for side in (1, -1):           # 1 buy, -1 sell
                price = fair - skew - side * (half + level * step)
                out.append((side, level, listing.clamp(price), qty))
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
        for side, level, price, qty in self.targets(listing):
            quote = self.quotes.setdefault((listing.symbol, side, level), Quote())
            if quote.live and quote.price == price:
                continue
            if quote.live:
                result = await self.request(self.client.replace(
                    client_order_id=quote.client_order_id, price=format_price(price)))
                if result is not None:
                    quote.price = price
                    quote.live = result["status"] in ("open", "partially_filled")
                    continue
                quote.live = False     # filled or gone meanwhile: quote afresh
            coid = self.next_id(f"{listing.symbol}-{'b' if side == 1 else 'a'}{level}")
            self._by_id.pop(quote.client_order_id, None)
            quote.client_order_id, quote.price = coid, price
            self._by_id[coid] = quote
            result = await self.request(self.client.place(
                listing.symbol, "buy" if side == 1 else "sell", qty, format_price(price),
                post_only=True, client_order_id=coid, stp="cancel_oldest"))
            quote.live = result is not None and result["status"] in ("open", "partially_filled")


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
        qty = min(40, 1 + int(rng.expovariate(1 / 6)))
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


# -- Operator and lab: large orders worked forward ----------------------------------------

class ForwardSeller(Participant):
    """Works one iceberg per month of its classes, ``premium_bps`` better than fair value
    for itself, re-offering what filled until it has dealt ``per_month`` contracts there.

    ``side`` is "sell" for an operator locking in revenue, "buy" for a lab fixing cost.
    """

    channels = ("orders",)

    def __init__(self, demo: Demo, account: str, client: Client, *, side: str,
                 classes: tuple[str, ...], per_month: int, display_qty: int, premium_bps: int,
                 cycle_s: float) -> None:
        super().__init__(demo, account, client)
        self.side, self.classes = side, classes
        self.sign = -1 if side == "sell" else 1
        self.per_month, self.display_qty = per_month, display_qty
        self.premium_bps, self.cycle_s = premium_bps, cycle_s
        self.working: dict[str, dict] = {}      # symbol -> the order as last told
        self.dealt: Counter[str] = Counter()    # symbol -> contracts filled

    async def start(self) -> None:
        self.client.on("orders", self._on_order)
        await super().start()
        # After a restart: carry on with the icebergs still working, and count what the
        # position says was dealt already.
        for order in await self.request(self.client.orders()) or ():
            self.working[order["symbol"]] = order
        for position in await self.request(self.client.call("account.positions")) or ():
            if position["qty"] * self.sign > 0:
                self.dealt[position["symbol"]] = abs(position["qty"])

    def _on_order(self, channel: str, order: dict) -> None:
        symbol = order["symbol"]
        if order.get("display_qty") is None:
            return
        known = self.working.get(symbol)
        if known is not None and known["order_id"] == order["order_id"]:
            self.dealt[symbol] += order["filled_qty"] - known["filled_qty"]
            self.working[symbol] = order

    def price(self, listing: Listing) -> int:
        fair = self.fair(listing)
        return listing.clamp(fair - self.sign * max(2, round(fair * self.premium_bps / 10_000)))

    async def run(self) -> None:
        while True:
            listings = self.tradable(self.classes)
            for listing in listings:
                await self.work(listing)
                await asyncio.sleep(self.cycle_s / max(1, len(listings)) / self.demo.speed)
            if not listings:
                await asyncio.sleep(1)

    async def work(self, listing: Listing) -> None:
        symbol, price = listing.symbol, self.price(listing)
        order = self.working.get(symbol)
        if order is not None and order["status"] in ("open", "partially_filled"):
            if parse_price(order["price"]) != price:
                result = await self.request(self.client.replace(order["order_id"],
                                                                price=format_price(price)))
                if result is not None:
                    self.working[symbol] = result
            return
        left = self.per_month - self.dealt[symbol]
        if left <= 0:
            return
        result = await self.request(self.client.place(
            symbol, self.side, left, format_price(price), display_qty=min(self.display_qty, left),
            client_order_id=self.next_id(symbol)))
        if result is not None:
            self.dealt[symbol] += result["filled_qty"]
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
    Role("operator-1", ForwardSeller, {"side": "sell", "classes": ("H100", "H200"),
                                       "per_month": 1024, "display_qty": 32,
                                       "premium_bps": 25, "cycle_s": 30.0}),
    Role("lab-1", ForwardSeller, {"side": "buy", "classes": ("H100", "B200"),
                                  "per_month": 512, "display_qty": 16, "premium_bps": 25,
                                  "cycle_s": 30.0}),
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
        await self.refresh_listing()
        months: dict[str, list[str]] = {}
        for x in self.listings.values():
            months.setdefault(x.gpu_class, []).append(x.symbol)
        self.world = World(self.seed, {c: v for c, v in self.levels.items() if c in months},
                           months)
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

    async def refresh_listing(self) -> None:
        for item in await self._listing_client.call("market.instruments"):
            self.listings[item["symbol"]] = Listing(
                item["symbol"], item["gpu_class"], item["status"],
                parse_price(item["band_low"]), parse_price(item["band_high"]))

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
        """Follow the bands and statuses (a band moves with trades and settlements)."""
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

