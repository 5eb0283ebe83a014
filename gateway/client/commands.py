"""The `gpux` client commands: instruments, curve, book, place, strip, cancel, orders, watch
(gateway.client.sdk underneath).

Each command opens one session, does its work and exits with 0, or with 1
when the server is unreachable, refuses the login or answers with an error,
and 2 for a usage error such as missing credentials. Credentials come from
``--api-key/--api-secret``, else ``--account NAME`` looked up in
``DATA_DIR/demo-accounts.json`` (written by ``gpux serve``), else the
environment (GPUX_API_KEY, GPUX_API_SECRET). Market data needs none.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import sys
from pathlib import Path
from typing import Awaitable, Callable

from gateway.client.sdk import (
    DEFAULT_URL, PRIVATE_CHANNELS, Client, ClientError, ConnectError, ConnectionLost, LocalBook,
    LoginError,
)

DEMO_FILE = "demo-accounts.json"
CLEAR_SCREEN = "\x1b[H\x1b[2J"


class UsageError(Exception):
    """A command line the command cannot run with (exit 2)."""


def add_commands(sub) -> None:
    """Add the client subcommands to the `gpux` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
    common.add_argument("--account", help="log in as this account of DATA_DIR/demo-accounts.json")
    common.add_argument("--data-dir", default="data", help="where demo-accounts.json is "
                        "(default ./data)")
    common.add_argument("--api-key", help="API key (default: $GPUX_API_KEY)")
    common.add_argument("--api-secret", help="API secret (default: $GPUX_API_SECRET)")

    listing = sub.add_parser("instruments", parents=[common],
                             help="list the contracts: months, quarters, years")
    listing.add_argument("--class", dest="gpu_class", help="only this GPU class")
    listing.add_argument("--tenor", choices=("week", "month", "quarter", "year"))
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(run=_instruments)

    curve = sub.add_parser("curve", parents=[common], help="show a class's forward curve")
    curve.add_argument("gpu_class", metavar="CLASS")
    curve.add_argument("--json", action="store_true", help="print a JSON list")
    curve.set_defaults(run=_curve)

    book = sub.add_parser("book", parents=[common], help="show an instrument's order book ladder")
    book.add_argument("symbol")
    book.add_argument("--depth", type=int, default=10, help="levels per side (default 10)")
    book.add_argument("--once", action="store_true", help="print one ladder and exit")
    book.set_defaults(run=_book)

    place = sub.add_parser("place", parents=[common], help="place an order; prints it as JSON")
    place.add_argument("symbol")
    place.add_argument("side", choices=("buy", "sell"))
    place.add_argument("qty", type=int)
    place.add_argument("--price", help="limit price, USD per GPU-hour (e.g. 2.145)")
    place.add_argument("--type", dest="order_type", default="limit",
                       choices=("limit", "market", "stop_limit", "stop_market"))
    place.add_argument("--tif", choices=("gtc", "gtd", "ioc", "fok"))
    place.add_argument("--client-order-id", help="default: a generated one")
    place.add_argument("--stop-price")
    place.add_argument("--expire-at", type=int, help="for --tif gtd: ms since the epoch")
    place.add_argument("--display-qty", type=int, help="iceberg: the quantity shown")
    place.add_argument("--post-only", action="store_true", default=None)
    place.add_argument("--reduce-only", action="store_true", default=None)
    place.add_argument("--stp", choices=("cancel_newest", "cancel_oldest", "cancel_both",
                                         "decrement"))
    place.set_defaults(run=_place)

    strip = sub.add_parser("strip", parents=[common], help="buy or sell the same quantity in "
                           "each of a run of contracts, all or none; prints it as JSON")
    strip.add_argument("symbols", nargs="+", metavar="SYMBOL",
                       help="2..36 consecutive contracts of one class and tenor")
    strip.add_argument("--side", required=True, choices=("buy", "sell"))
    strip.add_argument("--qty", required=True, type=int, help="per leg")
    strip.add_argument("--price", help="limit of the hours-weighted average (not with --quote)")
    strip.add_argument("--tif", choices=("fok", "ioc"), help="default fok")
    strip.add_argument("--client-order-id", help="default: a generated one")
    strip.add_argument("--quote", action="store_true",
                       help="only say what it would fill at now (no login, nothing placed)")
    strip.set_defaults(run=_strip)

    cancel = sub.add_parser("cancel", parents=[common], help="cancel an order (or all); prints "
                            "the result as JSON")
    which = cancel.add_mutually_exclusive_group(required=True)
    which.add_argument("--order-id", type=int)
    which.add_argument("--client-order-id")
    which.add_argument("--all", action="store_true", help="every open order (of --symbol)")
    cancel.add_argument("--symbol", help="with --all: only this instrument")
    cancel.set_defaults(run=_cancel)

    orders = sub.add_parser("orders", parents=[common], help="list the account's open orders")
    orders.add_argument("--symbol")
    orders.add_argument("--json", action="store_true", help="print a JSON list")
    orders.set_defaults(run=_orders)

    watch = sub.add_parser("watch", parents=[common], help="print notifications as JSON lines")
    watch.add_argument("channels", nargs="+", metavar="CHANNEL",
                       help="book.SYMBOL, trades.SYMBOL, ticker.SYMBOL, orders, fills, ...")
    watch.add_argument("--count", type=int, help="exit after this many messages")
    watch.set_defaults(run=_watch)


# -- Commands -----------------------------------------------------------------------------

def _instruments(args) -> int:
    async def body(client: Client) -> int:
        listed = [i for i in await client.call("market.instruments")
                  if (args.gpu_class is None or i["gpu_class"] == args.gpu_class)
                  and (args.tenor is None or i.get("tenor") == args.tenor)]
        listed.sort(key=lambda i: (i["gpu_class"], i["delivery_start"], i["delivery_end"]))
        return _show(args, listed, instrument_table)
    return _session(args, body, login=False)


def _curve(args) -> int:
    async def body(client: Client) -> int:
        return _show(args, await client.call("market.curve", gpu_class=args.gpu_class),
                     curve_table)
    return _session(args, body, login=False)


def _strip(args) -> int:
    if args.quote:
        async def quote(client: Client) -> int:
            _print_json(await client.strip_quote(args.symbols, args.side, args.qty))
            return 0
        return _session(args, quote, login=False)
    if args.price is None:
        return _fail("strip needs --price (the limit of the average), or --quote", 2)

    async def body(client: Client) -> int:
        _print_json(await client.place_strip(args.symbols, args.side, args.qty, args.price,
                                             tif=args.tif,
                                             client_order_id=args.client_order_id))
        return 0
    return _session(args, body, login=True)


def _book(args) -> int:
    async def body(client: Client) -> int:
        stream = client.stream(f"book.{args.symbol}")
        await client.subscribe(f"book.{args.symbol}")
        book = await client.wait_book(args.symbol)
        if args.once:
            print(ladder(book, args.depth))
            return 0
        tty = sys.stdout.isatty()
        shown = None
        async for _ in stream:
            if book.valid and book.seq != shown:
                shown = book.seq
                print((CLEAR_SCREEN if tty else "") + ladder(book, args.depth) + "\n",
                      flush=True)
        return 0
    return _session(args, body, login=False, live=not args.once)


def _place(args) -> int:
    async def body(client: Client) -> int:
        order = await client.place(
            args.symbol, args.side, args.qty, args.price, order_type=args.order_type,
            tif=args.tif, client_order_id=args.client_order_id, stop_price=args.stop_price,
            expire_at=args.expire_at, post_only=args.post_only, reduce_only=args.reduce_only,
            display_qty=args.display_qty, stp=args.stp)
        _print_json(order)
        return 0
    return _session(args, body, login=True)


def _cancel(args) -> int:
    async def body(client: Client) -> int:
        if args.all:
            _print_json({"cancelled": await client.cancel_all(args.symbol)})
        else:
            _print_json(await client.cancel(args.order_id, client_order_id=args.client_order_id))
        return 0
    return _session(args, body, login=True)


def _orders(args) -> int:
    async def body(client: Client) -> int:
        return _show(args, await client.orders(args.symbol), order_table)
    return _session(args, body, login=True)


def _watch(args) -> int:
    async def body(client: Client) -> int:
        stream = client.stream(*args.channels)
        await client.subscribe(*args.channels)
        if args.count is not None and args.count <= 0:
            return 0
        seen = 0
        async for channel, data in stream:
            print(json.dumps({"channel": channel, "data": data}), flush=True)
            seen += 1
            if seen == args.count:
                break
        return 0
    private = any(c in PRIVATE_CHANNELS for c in args.channels)
    return _session(args, body, login=private, live=args.count is None)


# -- Output -------------------------------------------------------------------------------

def ladder(book: LocalBook, depth: int) -> str:
    """The book as a ladder: asks above, bids below, best prices in the middle."""
    lines = [f"{book.symbol}  seq {book.seq}",
             f"{'orders':>6} {'bid qty':>9}  {'price':>9}  {'ask qty':<9} orders"]
    for price, qty, count in reversed(book.asks[:depth]):
        lines.append(f"{'':>6} {'':>9}  {price:>9}  {qty:<9} {count}")
    for price, qty, count in book.bids[:depth]:
        lines.append(f"{count:>6} {qty:>9}  {price:>9}")
    if len(lines) == 2:
        lines.append(f"{'(empty)':^40}")
    return "\n".join(lines)


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell, one row a line."""
    rows = [header] + rows
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)


def order_table(orders: list[dict]) -> str:
    """Open orders, one a line."""
    if not orders:
        return "no open orders"
    return table(("order_id", "client_order_id", "symbol", "side", "type", "price", "qty",
                  "filled", "status"), [
        (str(o["order_id"]), o["client_order_id"] or "-", o["symbol"], o["side"], o["type"],
         o["price"] or "-", str(o["qty"]), str(o["filled_qty"]), o["status"]) for o in orders])


def instrument_table(listed: list[dict]) -> str:
    """The contracts, one a line: what each delivers, until when it trades, what it becomes."""
    if not listed:
        return "no instruments"
    return table(("symbol", "tenor", "delivery", "hours", "status", "last trading (UTC)",
                  "band", "cascades into"), [
        (i["symbol"], i.get("tenor", "month"), f"{i['delivery_start']}..{i['delivery_end']}",
         str(i["contract_hours"]), i["status"] + (f" ({i['halt_reason']})"
                                                 if i.get("halt_reason") else ""),
         _utc(i["last_trading_time"]), f"{i['band_low']}-{i['band_high']}",
         " ".join(i.get("cascades_into") or ()) or "-") for i in listed])


def curve_table(curve: list[dict]) -> str:
    """A class's curve, one contract a line in delivery order."""
    if not curve:
        return "no contracts"
    return table(("symbol", "tenor", "delivery start", "bid", "ask", "last", "mark"), [
        (c["symbol"], c.get("tenor", "month"), c["delivery_start"], c["best_bid"] or "-",
         c["best_ask"] or "-", c["last_price"] or "-", c["mark_price"] or "-")
        for c in curve])


def _utc(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M")


def _show(args, rows: list[dict], as_table: Callable[[list[dict]], str]) -> int:
    """Print rows as JSON with --json, else as a table."""
    if args.json:
        _print_json(rows)
    else:
        print(as_table(rows))
    return 0


def _print_json(value) -> None:
    print(json.dumps(value, indent=2), flush=True)


# -- Sessions -----------------------------------------------------------------------------

def credentials(args) -> tuple[str, str] | None:
    """Return (api_key, api_secret) from the options, the demo file or the environment.

    Raises:
        UsageError: Only half a key pair, or an --account that cannot be found.
    """
    if args.api_key or args.api_secret:
        if not (args.api_key and args.api_secret):
            raise UsageError("give both --api-key and --api-secret")
        return args.api_key, args.api_secret
    if args.account:
        path = Path(args.data_dir) / DEMO_FILE
        try:
            accounts = json.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"{path} does not exist: start `gpux serve --data-dir "
                             f"{args.data_dir}` once, or pass --api-key/--api-secret") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
        for entry in accounts:
            if entry.get("account") == args.account:
                return entry["api_key"], entry["api_secret"]
        names = ", ".join(e.get("account", "?") for e in accounts)
        raise UsageError(f"no account {args.account!r} in {path} (it has: {names})")
    key, secret = os.environ.get("GPUX_API_KEY"), os.environ.get("GPUX_API_SECRET")
    if key and secret:
        return key, secret
    return None


def _session(args, body: Callable[[Client], Awaitable[int]], *, login: bool,
             live: bool = False) -> int:
    """Run ``body`` in a session and turn failures into messages and exit codes.

    A live command (a refreshing book, an endless watch) reconnects when the
    server goes away; a one-shot command fails instead.
    """
    logging.basicConfig(format="gpux: %(message)s", level=logging.WARNING)
    try:
        keys = credentials(args) if login else None
    except UsageError as exc:
        return _fail(str(exc), 2)
    if login and keys is None:
        return _fail(f"{args.command} needs credentials: --account NAME (with --data-dir), "
                     "--api-key/--api-secret, or GPUX_API_KEY/GPUX_API_SECRET", 2)
    api_key, api_secret = keys or (None, None)

    async def main() -> int:
        async with Client(args.url, api_key=api_key, api_secret=api_secret,
                          reconnect=live) as client:
            return await body(client)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0 if live else 130
    except ConnectError as exc:
        if exc.reason == "unreachable":
            return _fail(f"cannot connect to {args.url}: is `gpux serve` running?", 1)
        return _fail(exc.message, 1)
    except LoginError as exc:
        return _fail(f"login failed: {exc}", 1)
    except ConnectionLost as exc:
        params = exc.data.get("params") or {}
        hint = (f"; look the order up by client_order_id {params['client_order_id']}"
                if "client_order_id" in params else "")
        return _fail(f"{exc.message}{hint}", 1)
    except ClientError as exc:
        return _fail(f"{exc.method} failed: {exc.reason} (code {exc.code}): {exc.message}", 1)


def _fail(message: str, code: int) -> int:
    print(f"gpux: {message}", file=sys.stderr)
    return code
