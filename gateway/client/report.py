"""A lender's report of a hedge plan: one self-contained HTML page (no script, nothing
fetched; the charts are inline SVG) that prints on A4 as it shows on screen.

It holds the inputs, the assumptions (the formulas, so every figure can be redone by
hand), the headline figures, a chart of the DSCR by month (hedged against unhedged,
the P50 line and the band down to P99, with the targets), a chart of the CFADS by
month, and the plan's table of months.
"""
from __future__ import annotations

from html import escape

SCENARIOS = ("p50", "p90", "p99")
STYLE = """
:root { --ink: #16202c; --muted: #5b6b7d; --line: #d5dde6; --hedged: #1f6feb;
        --bare: #c2410c; --target: #15803d; }
* { box-sizing: border-box; }
body { margin: 24px auto; max-width: 1000px; padding: 0 20px; color: var(--ink);
       font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 22px 0 8px; }
p.sub { color: var(--muted); margin: 0 0 14px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { color: var(--muted); font-weight: 600; font-size: 11.5px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
.card b { display: block; font-size: 17px; } .card span { color: var(--muted); font-size: 11.5px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
svg { width: 100%; height: auto; } svg text { font: 10px system-ui, sans-serif; fill: #5b6b7d; }
.legend span { margin-right: 14px; color: var(--muted); font-size: 11.5px; }
.legend i { display: inline-block; width: 14px; height: 3px; vertical-align: middle;
            margin-right: 5px; }
ol.formulas li { margin-bottom: 3px; }
@page { size: A4; margin: 14mm; }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 10.5px; }
  h2 { break-after: avoid; } table, svg, .cards { break-inside: avoid; }
  .cards { grid-template-columns: repeat(4, 1fr); }
}
"""


def report_html(plan: dict, request: dict) -> str:
    """The report of ``plan`` (analytics.hedge_plan's result) asked with ``request``."""
    debt = request["debt"]
    title = (f"Hedge plan: {plan['gpus']} {plan['gpu_class']} GPUs from {request['start']}, "
             f"{len(plan['months'])} months")
    needed = plan["contracts_needed"]
    cards = [
        ("min DSCR P99, hedged", plan["hedged"]["min_dscr"]["p99"]),
        ("min DSCR P99, unhedged", plan["unhedged"]["min_dscr"]["p99"]),
        ("debt capacity, hedged (USD)", plan["hedged"]["debt_capacity"]),
        ("debt capacity, unhedged (USD)", plan["unhedged"]["debt_capacity"]),
        ("locked revenue (USD)", plan["locked_revenue"]),
        ("hedge the targets need", "none reaches them" if needed is None
         else f"{needed} a month ({plan['hedge_ratio_needed']})"),
        ("initial margin (USD)", plan["initial_margin"]),
        ("liquidity needed (USD)", plan["liquidity_needed"]),
    ]
    inputs = [
        ("GPU class", plan["gpu_class"]), ("GPUs", plan["gpus"]),
        ("first month", request["start"]), ("months", len(plan["months"])),
        ("utilisation", request.get("utilisation", "0.85 (default)")),
        ("basis, USD/GPU-h", request.get("basis", "0 (default)")),
        ("opex, USD/GPU-h", request["opex"]), ("principal, USD", debt["principal"]),
        ("rate, annual", debt["rate"]), ("tenor, months", debt["tenor"]),
        ("hedge ratio", request.get("hedge_ratio", "0 (default)")),
        ("volatility, annual", plan["vol"]),
        ("target DSCR P50 / P99", f"{request.get('dscr_p50', '1.30')} / "
                                  f"{request.get('dscr_p99', '1.00')}"),
        ("debt service, USD a month", plan["debt_service"]),
        ("curve as of (UTC)", plan["date"]),
    ]
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">From the gpux forward curve of {escape(plan["date"])}: forward '
        "sales of GPU-hours (futures on the exchange's books, margined daily) fix the "
        "revenue a lender can count on in a stress case.</p>",
        '<div class="cards">' + "".join(
            f"<div class=\"card\"><b>{escape(str(v))}</b><span>{escape(k)}</span></div>"
            for k, v in cards) + "</div>",
        "<h2>DSCR by month</h2>", _legend(), _dscr_chart(plan, request),
        "<h2>CFADS by month (USD), P50 and P99</h2>", _cfads_chart(plan),
        '<div class="two"><div><h2>Inputs</h2>' + _table(("input", "value"), inputs)
        + "</div><div><h2>Assumptions</h2>" + _formulas() + "</div></div>",
        "<h2>Months</h2>", _months_table(plan),
        _executable(plan),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _table(header, rows) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _months_table(plan: dict) -> str:
    rows = []
    for m in plan["months"]:
        dscr = m["dscr"] or {}
        bare = (m.get("unhedged") or {}).get("dscr") or {}
        rows.append((m["month"], m["forward"], m["symbol"] or m["source"],
                     m["hedge_symbol"] or "-", m["contracts"], m["cfads"]["p50"],
                     m["cfads"]["p99"], dscr.get("p50", "-"), dscr.get("p90", "-"),
                     dscr.get("p99", "-"), bare.get("p99", "-")))
    return _table(("month", "forward", "from", "hedge", "contracts", "CFADS P50",
                   "CFADS P99", "DSCR P50", "DSCR P90", "DSCR P99", "P99 unhedged"), rows)


def _executable(plan: dict) -> str:
    executable = plan["executable"]
    if executable is None:
        return ""
    rows = [(x["symbol"], x["qty"], x["available_qty"], x["avg_price"] or "-")
            for x in executable["legs"]]
    average = executable["avg_price"] or "not fillable in full now"
    return ("<h2>Selling the hedge on the books now</h2>"
            + _table(("contract", "to sell", "the bids take", "average price"), rows)
            + f"<p>Average over the contracts that fill in full: {escape(average)}</p>")


def _formulas() -> str:
    items = [
        "h = UTC hours of the month; G = GPUs x h.",
        "F = the mark of the shortest listed contract covering the month (month, quarter, "
        "year); tau = years of 365.25 days from the curve's time to the middle of the month.",
        "S(z) = F exp(-vol&sup2; tau / 2 + z vol &radic;tau); z = 0 (P50), -1.2815515655 (P90), "
        "-2.3263478740 (P99).",
        "Q = floor(hedge ratio x GPUs) contracts sold where a contract still trading covers "
        "the month inside the plan.",
        "Revenue = u G (S + basis) + Q h (F - S); CFADS = Revenue - opex G.",
        "DS = P i / (1 - (1 + i)<sup>-T</sup>), i = rate / 12; DSCR = CFADS / DS.",
        "Debt capacity = max(0, min(min CFADS P50 / target P50, min CFADS P99 / target P99)) "
        "x (1 - (1 + i)<sup>-T</sup>) / i.",
        "Initial margin: the exchange's own scan of the short hedge; variation margin in a "
        "P99 rally: &Sigma; Q h F (exp(-vol&sup2; tau / 2 + 2.3263478740 vol &radic;tau) - 1).",
    ]
    return '<ol class="formulas">' + "".join(f"<li>{i}</li>" for i in items) + "</ol>"


def _legend() -> str:
    keys = (("var(--hedged)", "hedged P50 (band to P99, dashed P90)"),
            ("var(--bare)", "unhedged P50 (band to P99)"), ("var(--target)", "targets"))
    return '<p class="legend">' + "".join(
        f'<span><i style="background:{c}"></i>{escape(t)}</span>' for c, t in keys) + "</p>"


class _Frame:
    """A chart's plot area: months across, values up."""

    def __init__(self, n: int, low: float, high: float, width=960, height=260) -> None:
        self.n, self.width, self.height = n, width, height
        self.left, self.right, self.top, self.bottom = 52, 10, 10, 24
        if high - low < 1e-9:
            low, high = low - 1, high + 1
        pad = (high - low) * 0.08
        self.low, self.high = low - pad, high + pad

    def x(self, k: float) -> float:
        return self.left + (k + 0.5) * (self.width - self.left - self.right) / self.n

    def y(self, v: float) -> float:
        span = self.height - self.top - self.bottom
        return self.top + span - (v - self.low) / (self.high - self.low) * span

    def axes(self, labels: list[str]) -> list[str]:
        out = []
        thousands = max(abs(self.low), abs(self.high)) >= 10_000
        for k in range(5):
            v = self.low + (self.high - self.low) * k / 4
            y = self.y(v)
            text = f"{v / 1000:,.0f}k" if thousands else f"{v:,.2f}"
            out.append(f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{y:.1f}" '
                       f'y2="{y:.1f}" stroke="#e6ebf0"/><text x="{self.left - 6}" '
                       f'y="{y + 3:.1f}" text-anchor="end">{text}</text>')
        step = max(1, len(labels) // 12)
        for k, label in enumerate(labels):
            if k % step == 0:
                out.append(f'<text x="{self.x(k):.1f}" y="{self.height - 8}" '
                           f'text-anchor="middle">{escape(label)}</text>')
        return out

    def svg(self, body: list[str], label: str) -> str:
        return (f'<svg viewBox="0 0 {self.width} {self.height}" role="img" '
                f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
                + "".join(body) + "</svg>")


def _path(frame: _Frame, values, style: str) -> str:
    points = [(frame.x(k), frame.y(v)) for k, v in enumerate(values) if v is not None]
    if not points:
        return ""
    d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
    return f'<path d="{d}" fill="none" {style}/>'


def _band(frame: _Frame, upper, lower, colour: str) -> str:
    pairs = [(k, u, d) for k, (u, d) in enumerate(zip(upper, lower)) if u is not None]
    if not pairs:
        return ""
    top = [f"{frame.x(k):.1f},{frame.y(u):.1f}" for k, u, _ in pairs]
    bottom = [f"{frame.x(k):.1f},{frame.y(d):.1f}" for k, _, d in reversed(pairs)]
    return f'<polygon points="{" ".join(top + bottom)}" fill="{colour}" opacity="0.13"/>'


def _dscr_chart(plan: dict, request: dict) -> str:
    months = [m for m in plan["months"] if m["dscr"] is not None]
    if not months:
        return "<p>No month is within the debt's tenor.</p>"

    def series(key, side):
        if side == "hedged":
            return [float(m["dscr"][key]) for m in months]
        return [float(m["unhedged"]["dscr"][key]) for m in months]
    targets = [float(request.get("dscr_p50", "1.30")), float(request.get("dscr_p99", "1.00"))]
    values = [v for side in ("hedged", "unhedged") for s in SCENARIOS for v in series(s, side)]
    frame = _Frame(len(months), min(values + targets), max(values + targets))
    body = frame.axes([m["month"] for m in months])
    for side, colour in (("unhedged", "#c2410c"), ("hedged", "#1f6feb")):
        body.append(_band(frame, series("p50", side), series("p99", side), colour))
        body.append(_path(frame, series("p50", side), f'stroke="{colour}" stroke-width="2"'))
        body.append(_path(frame, series("p99", side), f'stroke="{colour}" stroke-width="1"'))
        if side == "hedged":
            body.append(_path(frame, series("p90", side),
                              f'stroke="{colour}" stroke-width="1" stroke-dasharray="4 3"'))
    for target in targets:
        y = frame.y(target)
        body.append(f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{y:.1f}" '
                    f'y2="{y:.1f}" stroke="#15803d" stroke-dasharray="6 4"/>'
                    f'<text x="{frame.width - frame.right}" y="{y - 4:.1f}" '
                    f'text-anchor="end">target {target:.2f}</text>')
    return frame.svg(body, "DSCR by month, hedged and unhedged, P50 to P99, with targets")


def _cfads_chart(plan: dict) -> str:
    months = plan["months"]
    hedged = {s: [float(m["cfads"][s]) for m in months] for s in ("p50", "p99")}
    bare = {s: [float(m["unhedged"]["cfads"][s]) for m in months] for s in ("p50", "p99")}
    values = [v for d in (hedged, bare) for vs in d.values() for v in vs] + [0.0]
    frame = _Frame(len(months), min(values), max(values))
    body = frame.axes([m["month"] for m in months])
    width = (frame.width - frame.left - frame.right) / len(months) / 5
    zero = frame.y(0)
    for k in range(len(months)):
        for j, (v, colour) in enumerate(((hedged["p50"][k], "#1f6feb"),
                                         (hedged["p99"][k], "#7aa7f0"),
                                         (bare["p50"][k], "#c2410c"),
                                         (bare["p99"][k], "#e79a77"))):
            x = frame.x(k) + (j - 2) * width
            y = frame.y(v)
            body.append(f'<rect x="{x:.1f}" y="{min(y, zero):.1f}" width="{width * 0.9:.1f}" '
                        f'height="{abs(zero - y):.1f}" fill="{colour}"/>')
    return frame.svg(body, "CFADS by month: hedged P50 and P99, unhedged P50 and P99")
