"""The server's configuration: one TOML file for products, accounts and limits.

Every section is optional; ``gpux serve`` with no config is the embedded
default market. The file::

    [server]
    host = "127.0.0.1"
    port = 8765
    as_of = "2026-11-25"          # listing date; default: today (UTC)

    [limits]                      # any key of Limits below
    max_frame_bytes = 65536

    [clearing]                    # clearing.house.ClearingParams: index, margin, marks, fees
    position_limit = 100000
    [clearing.fees]
    taker_centi_bps = 250

    [schedule]                    # UTC times of the daily fixing and settlement
    fixing = "16:00"
    settlement = "16:30"

    [journal]                     # durability (JournalConfig below)
    durability = "fsync"          # or "unsafe-no-fsync", for benchmarks only
    snapshot_interval_s = 300

    [limits.roles.market_maker]   # any key of RoleLimits; unnamed keys keep the role's default
    orders = [800.0, 1600]        # token bucket: refill per second, burst

    [[account]]                   # replaces the demo accounts when present
    account = "desk-1"
    role = "market_maker"
    api_key = "..."
    api_secret = "..."
    collateral = "1000000"

    [[product]]                   # as in engine/products.toml
    gpu_class = "H100"
    reference_price = "2.10"

msgspec converts each section, so a misspelt key or a wrong type is refused
with its path named.
"""
from __future__ import annotations

import datetime
import tomllib
from typing import Annotated, Literal

import msgspec

from clearing.house import ClearingParams
from engine.contracts import ConfigError, Product, load_products, products_from_tables

Role = Literal["trader", "market_maker", "viewer", "index_provider", "admin"]

ClockTime = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z")]
Rate = Annotated[float, msgspec.Meta(gt=0, le=1e7)]
Burst = Annotated[int, msgspec.Meta(ge=1, le=10**8)]


class Bucket(msgspec.Struct, frozen=True, array_like=True):
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""
    rate: Rate
    burst: Burst


class RoleLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one role may do: message rates per connection and per account (all its
    connections), and how many orders an account may have open at once."""
    orders: Bucket = Bucket(50.0, 100)          # order.place/replace/cancel/cancel_all
    requests: Bucket = Bucket(20.0, 50)         # every other method, and unreadable frames
    # subscribe (a token per channel) and unsubscribe: the burst is a connection's whole
    # allowance of channels (max_subscriptions), so it can take them in one request
    subscriptions: Bucket = Bucket(10.0, 100)
    account_orders: Bucket = Bucket(100.0, 200)
    # every other method, over all the account's connections: a reconnect gets a new
    # connection's burst, never a new account's
    account_requests: Bucket = Bucket(40.0, 100)
    # auth.login of the account's key that passed the signature check: each is journaled
    # (its nonce), so a reconnect loop may not grow the journal without bound
    account_logins: Bucket = Bucket(1.0, 20)
    max_open_orders: Annotated[int, msgspec.Meta(ge=1, le=10**7)] = 1000


class RoleLimitsPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A [limits.roles.X] table: the keys it names replace that role's defaults."""
    orders: Bucket | None = None
    requests: Bucket | None = None
    subscriptions: Bucket | None = None
    account_orders: Bucket | None = None
    account_requests: Bucket | None = None
    account_logins: Bucket | None = None
    max_open_orders: Annotated[int, msgspec.Meta(ge=1, le=10**7)] | None = None


DEFAULT_ROLE_LIMITS: dict[str, RoleLimits] = {
    "trader": RoleLimits(),
    "market_maker": RoleLimits(orders=Bucket(500.0, 1000), requests=Bucket(100.0, 200),
                               account_orders=Bucket(1000.0, 2000),
                               account_requests=Bucket(200.0, 400), max_open_orders=5000),
    "viewer": RoleLimits(),
    "index_provider": RoleLimits(),
    "admin": RoleLimits(requests=Bucket(100.0, 200), account_requests=Bucket(200.0, 400)),
    "anonymous": RoleLimits(),    # a connection before auth.login
}


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_frame_bytes: Annotated[int, msgspec.Meta(ge=1024, le=2**24)] = 65536
    max_subscriptions: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    # Connections open at once from one address; past it a new one is closed with 1013.
    max_connections_per_address: Annotated[int, msgspec.Meta(ge=1)] = 1024
    # Connections an address may open (a handshake and a login each): past it, 1013 too.
    new_connections_per_address: Bucket = Bucket(50.0, 200)
    # Outbound messages queued for one connection: past `queue_soft` its book
    # streams are conflated into snapshots; past `queue_hard` it is disconnected.
    queue_soft: Annotated[int, msgspec.Meta(ge=1)] = 256
    queue_hard: Annotated[int, msgspec.Meta(ge=2)] = 4096
    queue_hard_bytes: Annotated[int, msgspec.Meta(ge=65536)] = 16 * 2**20
    # The kernel's send buffer per connection (SO_SNDBUF; 0 = the OS's autotuning, up to
    # megabytes). Kept moderate so a backlog builds in the outbound queue, where book
    # streams can be conflated, rather than as stale data in the kernel.
    socket_send_buffer: Annotated[int, msgspec.Meta(ge=0, le=2**26)] = 262144
    # Rate-limited requests in a row after which a connection is closed for flooding.
    flood_strikes: Annotated[int, msgspec.Meta(ge=1)] = 50
    login_window_s: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 30
    roles: dict[str, RoleLimitsPatch] = {}

    def for_role(self, role: str) -> RoleLimits:
        """The role's limits: its defaults, with what its [limits.roles.X] table names."""
        patch = self.roles.get(role)
        if patch is None:
            return DEFAULT_ROLE_LIMITS[role]
        changes = {f: v for f in patch.__struct_fields__ if (v := getattr(patch, f)) is not None}
        return msgspec.structs.replace(DEFAULT_ROLE_LIMITS[role], **changes)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.roles) - set(DEFAULT_ROLE_LIMITS))
        if unknown:
            raise ValueError(f"unknown role in [limits.roles]: {unknown[0]}")


class AccountConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One account and its API key. ``account_id`` is the engine's id (stable across restarts)."""
    account: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    role: Role
    api_key: Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
    api_secret: Annotated[str, msgspec.Meta(min_length=16, max_length=256)]
    account_id: Annotated[int, msgspec.Meta(ge=1, le=2**31)] | None = None
    collateral: str = "0"          # USD deposited at the first start
    trusted: bool = False          # an index provider that may feed in an external index


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8765
    as_of: datetime.date | None = None
    # The websocket library: picows (the default: the faster, README "Performance"), or
    # websockets, behind the same adapter.
    transport: Literal["picows", "websockets"] = "picows"


class ScheduleConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """When the scheduler sends clearing's daily commands, UTC "HH:MM"."""
    listing: ClockTime = "00:00"           # the rolling listing and the cascades
    fixing: ClockTime = "16:00"            # the index fixings
    settlement: ClockTime = "16:30"        # the daily settlement
    mark_interval_s: Annotated[float, msgspec.Meta(ge=0.05, le=3600)] = 1.0

    def time_of(self, which: str) -> datetime.time:
        return datetime.time.fromisoformat(getattr(self, which))


class JournalConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Durability: the journal's group commit, snapshots, and what may be pruned."""
    # "fsync": a batch is acked once fdatasync returns. "unsafe-no-fsync": once it is in
    # the page cache; survives the process being killed, not the machine failing.
    durability: Literal["fsync", "unsafe-no-fsync"] = "fsync"
    snapshot_interval_s: Annotated[float, msgspec.Meta(ge=1)] = 300.0
    snapshot_every: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000    # or after this many commands
    segment_bytes: Annotated[int, msgspec.Meta(ge=4096, le=2**32)] = 64 << 20   # then roll
    keep_snapshots: Annotated[int, msgspec.Meta(ge=1, le=100)] = 2
    prune: bool = True       # delete journal files the oldest kept snapshot covers


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    server: ServerConfig = ServerConfig()
    limits: Limits = Limits()
    clearing: ClearingParams = ClearingParams()
    schedule: ScheduleConfig = ScheduleConfig()
    journal: JournalConfig = JournalConfig()
    account: list[AccountConfig] = []
    products: list[Product] | None = None     # None: the embedded default


def load_config(text: str | None) -> Config:
    """Read a gateway config from TOML text; None is the embedded default.

    Raises:
        ConfigError: invalid TOML, an unknown key or a wrong value, with its path.
    """
    if text is None:
        return Config(products=load_products())
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from None
    tables = document.pop("product", None)
    try:
        config = msgspec.convert(document, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(str(exc)) from None
    products = products_from_tables(tables) if tables is not None else load_products()
    return msgspec.structs.replace(config, products=products)
