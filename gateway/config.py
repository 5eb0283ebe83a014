"""The server's configuration: one TOML file for products, accounts and limits.

Every section is optional; ``gpux serve`` with no config is the embedded
default market. The file::

    [server]
    host = "127.0.0.1"
    port = 8765
    as_of = "2026-11-25"          # listing date; default: today (UTC)

    [limits]                      # any key of Limits below
    max_frame_bytes = 65536

    [limits.roles.market_maker]   # any key of RoleLimits; unnamed keys keep their default
    orders = [500.0, 1000]        # token bucket: refill per second, burst

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

from engine.contracts import ConfigError, Product, load_products, products_from_tables

Role = Literal["trader", "market_maker", "viewer", "index_provider", "admin"]
ROLES: tuple[str, ...] = ("trader", "market_maker", "viewer", "index_provider", "admin")

Rate = Annotated[float, msgspec.Meta(ge=0, le=1e6)]
Burst = Annotated[int, msgspec.Meta(ge=0, le=10**7)]


class Bucket(msgspec.Struct, frozen=True, array_like=True):
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""
    rate: Rate
    burst: Burst


class RoleLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Message rates of one role, per connection and per account (all its connections)."""
    orders: Bucket = Bucket(50.0, 100)          # order.place/replace/cancel/cancel_all
    requests: Bucket = Bucket(20.0, 50)         # every other method
    subscriptions: Bucket = Bucket(10.0, 50)    # subscribe/unsubscribe
    account_orders: Bucket = Bucket(100.0, 200)


DEFAULT_ROLE_LIMITS: dict[str, RoleLimits] = {
    "trader": RoleLimits(),
    "market_maker": RoleLimits(orders=Bucket(500.0, 1000), requests=Bucket(100.0, 200),
                               account_orders=Bucket(1000.0, 2000)),
    "viewer": RoleLimits(),
    "index_provider": RoleLimits(),
    "admin": RoleLimits(requests=Bucket(100.0, 200)),
    "anonymous": RoleLimits(),    # a connection before auth.login
}


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_frame_bytes: Annotated[int, msgspec.Meta(ge=1024, le=2**24)] = 65536
    max_subscriptions: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    # Outbound messages queued for one connection: past `queue_soft` its book
    # streams are conflated into snapshots; past `queue_hard` it is disconnected.
    queue_soft: Annotated[int, msgspec.Meta(ge=1)] = 256
    queue_hard: Annotated[int, msgspec.Meta(ge=2)] = 4096
    # The kernel's send buffer per connection (SO_SNDBUF; 0 = the OS's autotuning, up to
    # megabytes). Kept moderate so a backlog builds in the outbound queue, where book
    # streams can be conflated, rather than as stale data in the kernel.
    socket_send_buffer: Annotated[int, msgspec.Meta(ge=0, le=2**26)] = 262144
    # Rate-limited requests in a row after which a connection is closed for flooding.
    flood_strikes: Annotated[int, msgspec.Meta(ge=1)] = 50
    login_window_s: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 30
    roles: dict[str, RoleLimits] = {}

    def for_role(self, role: str) -> RoleLimits:
        return self.roles.get(role) or DEFAULT_ROLE_LIMITS[role]


class AccountConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One account and its API key. ``account_id`` is the engine's id (stable across restarts)."""
    account: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    role: Role
    api_key: Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
    api_secret: Annotated[str, msgspec.Meta(min_length=16, max_length=256)]
    account_id: Annotated[int, msgspec.Meta(ge=1, le=2**31)] | None = None
    collateral: str = "0"


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8765
    as_of: datetime.date | None = None


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    server: ServerConfig = ServerConfig()
    limits: Limits = Limits()
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
    unknown_roles = sorted(set(config.limits.roles) - set(ROLES))
    if unknown_roles:
        raise ConfigError(f"unknown role in [limits.roles]: {unknown_roles[0]}")
    products = products_from_tables(tables) if tables is not None else load_products()
    return msgspec.structs.replace(config, products=products)
