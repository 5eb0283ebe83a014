"""`gpux hedge`: a hedge plan (analytics.hedge_plan) as a table, JSON, CSV or a lender's
report.

    gpux hedge --class H100 --gpus 100 --start 2027-04 --months 3 --opex 0.50 \\
        --principal 150000 --rate 0.12 --tenor 3 --hedge-ratio 0.5 [--json | --csv]
        [--report plan.html]

The plan is computed by the exchange from its live curve; this only asks and shows.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from gateway.client.commands import _fail, _print_json, _session, table
from gateway.client.sdk import DEFAULT_URL, Client

SCENARIOS = ("p50", "p90", "p99")
_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")


def add_commands(sub) -> None:
    hedge = sub.add_parser("hedge", help="a hedge plan: DSCRs, debt capacity and the hedge a "
                           "lender needs, from the live curve")
    hedge.add_argument("--url", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
    hedge.add_argument("--class", dest="gpu_class", required=True, help="GPU class, e.g. H100")
    hedge.add_argument("--gpus", required=True, type=int, help="GPUs in the cluster")
    hedge.add_argument("--start", required=True, help="first month, YYYY-MM")
    hedge.add_argument("--months", required=True, type=int, help="months planned (1..60)")
    hedge.add_argument("--opex", required=True, help="USD per GPU-hour of the whole cluster")
    hedge.add_argument("--principal", required=True, help="debt, USD")
    hedge.add_argument("--rate", required=True, help="annual interest rate, e.g. 0.12")
    hedge.add_argument("--tenor", required=True, type=int, help="months of repayment")
    for name, what in (("utilisation", "share of the GPU-hours rented (default 0.85)"),
                       ("basis", "rental price minus the index, USD/GPU-h (default 0)"),
                       ("hedge-ratio", "share of the GPUs sold forward (default 0)"),
                       ("vol", "annual volatility (default: the product's)"),
                       ("dscr-p50", "target DSCR in the median case (default 1.30)"),
                       ("dscr-p99", "target DSCR in the P99 case (default 1.00)")):
        hedge.add_argument(f"--{name}", help=what)
    hedge.add_argument("--extrapolate", action="store_true",
                       help="past the listed curve, use its last forward")
    shape = hedge.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print the plan as JSON")
    shape.add_argument("--csv", action="store_true", help="print the months as CSV")
    hedge.add_argument("--report", type=Path, metavar="FILE.html",
                       help="also write a lender's report: one self-contained HTML page")
    hedge.set_defaults(run=_hedge)


def params(args) -> dict:
    """The request's params from the command line (strings stay strings)."""
    out = {"gpu_class": args.gpu_class, "gpus": args.gpus, "start": args.start,
           "months": args.months, "opex": args.opex,
           "debt": {"principal": args.principal, "rate": args.rate, "tenor": args.tenor}}
    for key in ("utilisation", "basis", "hedge_ratio", "vol", "dscr_p50", "dscr_p99"):
        value = getattr(args, key)
        if value is not None:
            out[key] = value
    if args.extrapolate:
        out["extrapolate"] = True
    return out


def _hedge(args) -> int:
    if not _MONTH.fullmatch(args.start):
        return _fail(f"--start must be a month, YYYY-MM; got {args.start!r}", 2)
    request = params(args)

    async def body(client: Client) -> int:
        plan = await client.call("analytics.hedge_plan", **request)
        if args.json:
            _print_json(plan)
        elif args.csv:
            print(months_csv(plan), end="")
        else:
            print(summary(plan))
        if args.report is not None:
            from gateway.client.report import report_html
            try:
                args.report.write_text(report_html(plan, request), encoding="utf-8")
            except OSError as exc:
                return _fail(f"cannot write the report to {args.report}: {exc.strerror}", 1)
        return 0
    return _session(args, body, login=False)


def summary(plan: dict) -> str:
    """The headline figures, then one line a month."""
    hedged, unhedged = plan["hedged"], plan["unhedged"]
    needed = plan["contracts_needed"]
    lines = [
        f"{plan['gpu_class']} x {plan['gpus']} GPUs, vol {plan['vol']}, as of "
        f"{plan['date']}; debt service {plan['debt_service']} USD a month",
        "",
        table(("", "min DSCR p50", "p90", "p99", "debt capacity"), [
            (name, *(side["min_dscr"][s] for s in SCENARIOS), side["debt_capacity"])
            for name, side in (("hedged", hedged), ("unhedged", unhedged))]),
        "",
        f"locked revenue {plan['locked_revenue']} USD; hedge the targets need: "
        + ("none reaches them" if needed is None
           else f"{needed} contracts a month ({plan['hedge_ratio_needed']} of the GPUs)"),
        f"initial margin {plan['initial_margin']} USD + P99 rally variation margin "
        f"{plan['vm_stress']} USD = liquidity needed {plan['liquidity_needed']} USD",
    ]
    executable = plan["executable"]
    if executable is not None:
        average = executable["avg_price"] or "not fillable in full"
        legs = ", ".join(f"{x['symbol']} {x['available_qty']}/{x['qty']}"
                         for x in executable["legs"])
        lines.append(f"selling the hedge on the books now: average {average} ({legs})")
    lines += ["", table(("month", "forward", "from", "hedge", "contracts", "CFADS p50",
                         "CFADS p99", "DSCR p50", "DSCR p90", "DSCR p99"), [
        (m["month"], m["forward"], m["symbol"] or m["source"], m["hedge_symbol"] or "-",
         str(m["contracts"]), m["cfads"]["p50"], m["cfads"]["p99"],
         *((m["dscr"][s] if m["dscr"] else "-") for s in SCENARIOS))
        for m in plan["months"]])]
    return "\n".join(lines)


def months_csv(plan: dict) -> str:
    """One row a month, every figure (dscr empty past the tenor)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["month", "symbol", "source", "hedge_symbol", "hours", "forward", "tau",
                     "contracts"] + [f"{kind}_{s}" for kind in ("revenue", "cfads", "dscr")
                                     for s in SCENARIOS])
    for m in plan["months"]:
        writer.writerow([m["month"], m["symbol"] or "", m["source"], m["hedge_symbol"] or "",
                         m["hours"], m["forward"], m["tau"], m["contracts"]]
                        + [m["revenue"][s] for s in SCENARIOS]
                        + [m["cfads"][s] for s in SCENARIOS]
                        + [(m["dscr"] or {}).get(s, "") for s in SCENARIOS])
    return out.getvalue()
