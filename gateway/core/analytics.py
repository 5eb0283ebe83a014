"""analytics.hedge_plan over the wire: the live market as clearing.hedge reads it, and the
plan as PROTOCOL.md words it.

The plan is a read: it asks the venue for the class's contracts and marks, clearing for
the margin of the hedge and the books for what selling it would fetch, and changes
nothing. Decimals arrive and leave as strings: USD to 2 decimals, DSCRs and ratios to 4,
tau to 9, forwards as prices (3), average prices to 6.
"""
from __future__ import annotations

import datetime
import re
from decimal import Decimal

from clearing.hedge import (
    SCENARIOS, Contract, Debt, Inputs, Plan, PlanError, month_name, plan,
)
from clearing.margin import requirement
from engine.contracts import utc_day
from engine.messages import InstrumentStatus, RejectReason
from engine.prices import format_price
from gateway.core import schema
from gateway.core.errors import RpcError

_DECIMAL = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,12})?")


def _number(text: str | None, field: str, default: float) -> float:
    """A wire decimal string as a float (the plan's arithmetic is float64)."""
    if text is None:
        return default
    if not _DECIMAL.fullmatch(text):
        raise RpcError(RejectReason.INVALID_PARAMS, f"{field} must be a decimal string, "
                       f"e.g. \"0.85\"; got {text!r}", field=field)
    return float(text)


def inputs(p: schema.HedgePlan, vol_bps: int) -> Inputs:
    """The plan's inputs from the request's params (vol defaulting to the product's)."""
    try:
        start = datetime.date(int(p.start[:4]), int(p.start[5:]), 1)
    except ValueError:
        raise RpcError(RejectReason.INVALID_PARAMS, f"start {p.start!r} is no month (YYYY-MM)",
                       field="start") from None
    return Inputs(
        gpus=p.gpus, start=start, months=p.months, opex=_number(p.opex, "opex", 0.0),
        debt=Debt(_number(p.debt.principal, "debt.principal", 0.0),
                  _number(p.debt.rate, "debt.rate", 0.0), p.debt.tenor),
        vol=_number(p.vol, "vol", vol_bps / 10_000),
        utilisation=_number(p.utilisation, "utilisation", 0.85),
        basis=_number(p.basis, "basis", 0.0),
        hedge_ratio=_number(p.hedge_ratio, "hedge_ratio", 0.0),
        dscr_p50=_number(p.dscr_p50, "dscr_p50", 1.30),
        dscr_p99=_number(p.dscr_p99, "dscr_p99", 1.00), extrapolate=p.extrapolate)


def hedge_plan(core, session, p: schema.HedgePlan) -> dict:
    venue = core.venue
    house, exchange = venue.house, venue.exchange
    product = next((x for x in house.products if x.gpu_class == p.gpu_class), None)
    if product is None or p.gpu_class not in house.index:
        raise RpcError(RejectReason.UNKNOWN_GPU_CLASS, f"no class {p.gpu_class!r} is listed",
                       field="gpu_class")
    now = venue.now()
    contracts = []
    for market in exchange.markets.values():
        inst = market.instrument
        if inst.gpu_class == p.gpu_class:
            contracts.append(Contract(
                inst.symbol, inst.kind, inst.delivery_start, inst.delivery_end,
                house.marks[inst.symbol].price,
                market.status is InstrumentStatus.OPEN and now < inst.last_trading_ns))
    risk = house.risk

    def initial_margin(positions: dict[str, int]) -> int:
        return requirement(risk.legs, positions, (), risk.params_by_class)[1]

    def sell(symbol: str, qty: int) -> tuple[int, int]:
        filled = paid = 0
        for price, size, _ in exchange.markets[symbol].book.depth(1, 10_000):
            take = min(size, qty - filled)
            filled += take
            paid += take * price
            if filled == qty:
                break
        return filled, paid
    try:
        result = plan(inputs(p, product.vol_bps), contracts, now, initial_margin, sell)
    except PlanError as exc:
        raise RpcError(exc.reason, str(exc), field=exc.field) from None
    return view(result, p.gpu_class, now, p.vol)


def _usd(x: float) -> str:
    text = f"{x:.2f}"
    return "0.00" if text == "-0.00" else text


def _ratio(x: float) -> str:
    text = f"{x:.4f}"
    return "0.0000" if text == "-0.0000" else text


def _scenarios(values: dict[str, float], fmt) -> dict[str, str]:
    return {name: fmt(values[name]) for name, _ in SCENARIOS}


def view(result: Plan, gpu_class: str, now_ns: int, vol_text: str | None) -> dict:
    """The plan as PROTOCOL.md's analytics.hedge_plan result."""
    inputs = result.inputs
    months = []
    for k, m in enumerate(result.months):
        dscr, bare = result.hedged.dscr[k], result.unhedged.dscr[k]
        months.append({
            "month": month_name(m.start), "symbol": m.symbol, "source": m.source,
            "hedge_symbol": m.hedge_symbol, "hours": m.hours,
            "forward": format_price(round(m.forward * 1000)), "tau": f"{m.tau:.9f}",
            "contracts": result.lots[k],
            "revenue": _scenarios(result.hedged.revenue[k], _usd),
            "cfads": _scenarios(result.hedged.cfads[k], _usd),
            "dscr": None if dscr is None else _scenarios(dscr, _ratio),
            # Extension: the same month with no hedge.
            "unhedged": {"cfads": _scenarios(result.unhedged.cfads[k], _usd),
                         "dscr": None if bare is None else _scenarios(bare, _ratio)}})
    q = result.contracts_needed
    executable = result.executable
    return {
        "as_of": now_ns // 1_000_000, "date": utc_day(now_ns).isoformat(),
        "gpu_class": gpu_class, "gpus": inputs.gpus,
        "vol": f"{inputs.vol:.4f}" if vol_text is None else _canonical(vol_text),
        "debt_service": _usd(result.debt_service),
        "months": months,
        "hedged": {"min_dscr": _scenarios(result.hedged.min_dscr, _ratio),
                   "debt_capacity": _usd(result.hedged.debt_capacity)},
        "unhedged": {"min_dscr": _scenarios(result.unhedged.min_dscr, _ratio),
                     "debt_capacity": _usd(result.unhedged.debt_capacity)},
        "locked_revenue": _usd(result.locked_revenue),
        "contracts_needed": q,
        "hedge_ratio_needed": None if q is None else _ratio(q / inputs.gpus),
        "initial_margin": _usd(result.initial_margin),
        "vm_stress": _usd(result.vm_stress),
        "liquidity_needed": _usd(result.initial_margin + result.vm_stress),
        "executable": None if executable is None else {
            "avg_price": _avg(executable["avg_price"]),
            "legs": [{"symbol": s, "qty": qty, "avg_price": _avg(avg), "available_qty": n}
                     for s, qty, avg, n in executable["legs"]]},
    }


def _canonical(text: str) -> str:
    """A decimal as given, less its redundant signs and zeros ("-0" is "0", "00.5" "0.5")."""
    value = Decimal(text)
    return str(abs(value) if value == 0 else value)


def _avg(x: float | None) -> str | None:
    return None if x is None else f"{x:.6f}"
