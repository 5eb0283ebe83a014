"""gateway.core.codec: the checksum of PROTOCOL.md and the wire <-> engine conversions."""
from __future__ import annotations

import zlib

import msgspec
import pytest

from engine.messages import OrderType, SelfTradePrevention, Side, TimeInForce
from gateway.core import codec, schema
from gateway.core.errors import ERRORS, RpcError
from inproc import InProcess


def test_checksum_is_protocols_example():
    """The checksum string of PROTOCOL.md's example, and '#' for an empty book."""
    bids = [["2.145", 10, 1], ["2.144", 3, 2]]
    asks = [["2.150", 7, 1]]
    assert codec.checksum(bids, asks) == zlib.crc32(b"2.145:10|2.144:3#2.150:7")
    assert codec.checksum([], []) == zlib.crc32(b"#")


def test_checksum_covers_the_top_ten_levels_only():
    """Levels past the tenth on a side do not change the checksum."""
    bids = [[f"2.{100 - i:03d}", 1, 1] for i in range(12)]
    assert codec.checksum(bids, []) == codec.checksum(bids[:10], [])
    assert codec.checksum(bids, []) != codec.checksum(bids[:9], [])


def test_place_params_become_the_engine_command():
    """Names map onto engine enums, prices onto ticks and expire_at onto nanoseconds."""
    p = msgspec.json.decode(b'{"symbol":"H100-2027-03","side":"sell","type":"stop_limit",'
                            b'"qty":3,"price":"2.1","stop_price":"2.095","tif":"gtd",'
                            b'"expire_at":1800000000000,"stp":"decrement",'
                            b'"client_order_id":"a-1"}', type=schema.Place)
    cmd = codec.place_command(p, account_id=7, ts_ns=5)
    assert (cmd.side, cmd.order_type, cmd.tif, cmd.stp) == (
        Side.SELL, OrderType.STOP_LIMIT, TimeInForce.GTD, SelfTradePrevention.DECREMENT)
    assert (cmd.price, cmd.stop_price, cmd.expire_at_ns) == (2100, 2095, 1_800_000_000_000_000_000)
    assert (cmd.account_id, cmd.ts_ns, cmd.client_order_id) == (7, 5, "a-1")


def test_the_wire_cannot_place_a_liquidation_order():
    """liquidation is clearing's own flag: order.place's params refuse it, and the engine
    command built from a place never has it."""
    with pytest.raises(msgspec.ValidationError, match="liquidation"):
        msgspec.json.decode(b'{"symbol":"H100-2027-03","side":"sell","qty":3,'
                            b'"liquidation":true}', type=schema.Place)
    p = msgspec.json.decode(b'{"symbol":"H100-2027-03","side":"sell","qty":3,'
                            b'"reduce_only":true}', type=schema.Place)
    cmd = codec.place_command(p, account_id=7, ts_ns=5)
    assert cmd.reduce_only is True and cmd.liquidation is False


@pytest.mark.parametrize("text, reason", [("2.1005", "price_off_tick"), ("abc", "invalid_price"),
                                          ("0.000", "invalid_price")])
def test_bad_prices_are_typed_errors(text, reason):
    """A price is never rounded: off-tick and malformed prices are errors naming the field."""
    with pytest.raises(RpcError) as caught:
        codec.price(text, "stop_price")
    assert (caught.value.reason, caught.value.field) == (reason, "stop_price")


def test_validation_errors_name_the_field():
    """msgspec's messages become invalid_params with data.field."""
    for raw, field in ((b'{"symbol":"X","side":"buy"}', "qty"),
                       (b'{"symbol":"X","side":"buy","qty":1,"colour":"red"}', "colour"),
                       (b'{"symbol":"X","side":"up","qty":1}', "side")):
        with pytest.raises(RpcError) as caught:
            codec.decode_params(msgspec.Raw(raw), schema.Place)
        assert (caught.value.reason, caught.value.field) == ("invalid_params", field)


def test_every_error_reason_has_a_unique_code_except_json_rpcs_shared_ones():
    """Positive codes name exactly one reason; PROTOCOL.md's required reasons all exist."""
    positive = [code for code, _ in ERRORS.values() if code > 0]
    assert len(positive) == len(set(positive))
    required = ("unauthenticated forbidden rate_limited unknown_instrument instrument_not_trading "
                "price_off_tick price_out_of_band invalid_quantity post_only_would_take "
                "fok_not_fillable no_liquidity insufficient_margin position_limit "
                "reduce_only_would_increase unknown_order duplicate_client_order_id "
                "self_trade_prevented too_many_subscriptions frame_too_large invalid_signature "
                "stale_timestamp nonce_reused").split()
    assert set(required) <= set(ERRORS)


def test_instruments_say_their_tenor_and_what_they_cascade_into(tmp_path):
    """PROTOCOL 1.1: market.instruments has each contract's tenor, and the symbols a quarter
    or a year becomes at its last trading time ([] for a month)."""
    venue = InProcess(tmp_path / "data", '[[product]]\ngpu_class = "H100"\n'
                      'reference_price = "2.10"\nmonths = 1\nquarters = 1\nyears = 1\n')
    listed = {i["symbol"]: i for i in venue.result(venue.session(), "market.instruments")}
    assert {s: (i["tenor"], i["cascades_into"], i["contract_hours"])
            for s, i in listed.items()} == {
        "H100-2026-12": ("month", [], 744),
        "H100-2027-Q1": ("quarter", ["H100-2027-01", "H100-2027-02", "H100-2027-03"], 2160),
        "H100-2027": ("year", ["H100-2027-Q1", "H100-2027-Q2", "H100-2027-Q3",
                               "H100-2027-Q4"], 8760)}
