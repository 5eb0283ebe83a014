/*
 * format.js: values as the wire sends them and as the page shows them.
 *
 * Prices travel as decimal strings ("2.145"): the page compares them as integer
 * thousandths (ticks) and shows them as sent. Quantities, times and delivery
 * periods have one format each, and a chart's axis gets round ticks. Nothing
 * here touches the page, so any module may use it.
 */

export const DASH = "–";
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
export const QTY_FORMAT = new Intl.NumberFormat("en-US");

export const isNum = (x) => typeof x === "number" && Number.isFinite(x);

/** A wire price ("2.145") as an integer number of thousandths, or null. */
export function ticks(price) {
  if (price === null || price === undefined || price === "") return null;
  const n = Number(price);
  return Number.isFinite(n) ? Math.round(n * 1000) : null;
}

export function num(price) {
  const t = ticks(price);
  return t === null ? null : t / 1000;
}

export const fmtPrice = (p) => (p === null || p === undefined || p === "" ? DASH : String(p));
export const fmtQty = (q) => (isNum(q) ? QTY_FORMAT.format(q) : DASH);
const pad2 = (n) => String(n).padStart(2, "0");

export function fmtTime(ms) {
  if (!isNum(ms)) return DASH;
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

export function fmtHM(ms) {
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** "2027-03-01" -> "Mar 27". */
export function monthLabel(date) {
  const m = /^(\d{4})-(\d{2})/.exec(date || "");
  if (!m) return date || DASH;
  return `${MONTHS[Number(m[2]) - 1] || m[2]} ${m[1].slice(2)}`;
}

export function monthLong(date) {
  const m = /^(\d{4})-(\d{2})/.exec(date || "");
  return m ? `${MONTHS[Number(m[2]) - 1] || m[2]} ${m[1]}` : DASH;
}

/** A contract's delivery period, short: "Mar 27", "Q2 27", "2028", "W14 27". */
export function periodLabel(inst) {
  const sym = /-(\d{4})(?:-(Q\d|W\d{2}))?$/.exec(inst.symbol || "");
  if (inst.tenor === "year" && sym) return sym[1];
  if ((inst.tenor === "quarter" || inst.tenor === "week") && sym && sym[2]) {
    return `${sym[2]} ${sym[1].slice(2)}`;
  }
  return monthLabel(inst.delivery_start);
}

/** A contract's delivery period, long: "Mar 2027", "Q2 2027 (Apr-Jun)", "year 2028". */
export function periodLong(inst) {
  if (inst.tenor === "year") return `year ${periodLabel(inst)}`;
  if (inst.tenor === "quarter" || inst.tenor === "week") {
    const last = new Date(Date.parse(inst.delivery_end) - 86_400_000).toISOString();
    const label = periodLabel(inst).replace(" ", " 20");
    const first = monthLabel(inst.delivery_start).slice(0, 3);
    return inst.tenor === "quarter"
      ? `${label} (${first}–${monthLabel(last).slice(0, 3)})`
      : `${label} (from ${inst.delivery_start})`;
  }
  return monthLong(inst.delivery_start);
}

// -- Nice axis ticks ------------------------------------------------------------------

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/** Round the domain [lo, hi] out to nice ticks: {lo, hi, ticks, decimals}. */
export function niceScale(lo, hi, count) {
  if (!isNum(lo) || !isNum(hi)) return null;
  if (hi - lo < 1e-9) {
    const padding = Math.max(Math.abs(hi) * 0.01, 0.005);
    lo -= padding;
    hi += padding;
  }
  const step = niceStep(hi - lo, count);
  const first = Math.floor(lo / step + 1e-9) * step;
  const last = Math.ceil(hi / step - 1e-9) * step;
  const out = [];
  for (let v = first; v <= last + step / 2; v += step) out.push(Number(v.toFixed(10)));
  const digits = step.toFixed(6).replace(/0+$/, "").split(".")[1] || "";
  return { lo: first, hi: last, ticks: out, decimals: Math.min(4, digits.length) };
}
