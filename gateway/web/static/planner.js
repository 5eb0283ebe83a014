/*
 * planner.js: the hedge planner. A cluster's inputs for the selected class go to
 * analytics.hedge_plan (a read: it books nothing); the answer is shown as its headline
 * figures and a chart of the DSCR by month, hedged against unhedged: the P50 line, the
 * band down to P99, P90 dashed, and the targets. The plan is the exchange's own, from
 * its live curve; this only asks and draws.
 */

import { $, el, setAttr, setText, svg } from "./dom.js";
import { call } from "./link.js";
import { state } from "./state.js";

const SIDES = [["hedged", "hedged"], ["unhedged", "unhedged"]];

export function startPlanner() {
  const form = $("planner-form");
  const now = new Date();
  const next = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  if (!form.elements.start.value) form.elements.start.value = next.toISOString().slice(0, 7);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    plan(form);
  });
}

function params(form) {
  const v = (name) => form.elements[name].value.trim();
  const out = {
    gpu_class: state.cls, gpus: Number(v("gpus")), start: v("start"), months: Number(v("months")),
    utilisation: v("utilisation"), opex: v("opex"),
    debt: { principal: v("principal"), rate: v("rate"), tenor: Number(v("tenor")) },
    hedge_ratio: v("hedge_ratio"),
  };
  if (form.elements.extrapolate.checked) out.extrapolate = true;
  return out;
}

async function plan(form) {
  const box = $("planner-result");
  const asked = params(form);
  setAttr(box, "data-state", "asking");
  setText($("planner-status"), `planning ${asked.gpu_class}…`);
  let result;
  try {
    result = await call("analytics.hedge_plan", asked);
  } catch (err) {
    const field = err.data && err.data.field ? ` (${err.data.field})` : "";
    setText($("planner-status"), `${err.reason || "error"}${field}: ${err.message}`);
    setAttr(box, "data-state", "error");
    return;
  }
  const needed = result.contracts_needed === null
    ? "no hedge up to the utilisation meets the targets"
    : `${result.contracts_needed} contracts a month (${result.hedge_ratio_needed} of the GPUs)`;
  setText($("planner-status"), `${result.gpu_class}, curve of ${result.date}, vol ${result.vol}; `
    + `debt service ${result.debt_service} USD a month; the targets need ${needed}`);
  const figures = [
    ["min DSCR P99, hedged", result.hedged.min_dscr.p99, "p99-hedged"],
    ["min DSCR P99, unhedged", result.unhedged.min_dscr.p99, "p99-unhedged"],
    ["debt capacity, hedged", result.hedged.debt_capacity, "capacity-hedged"],
    ["debt capacity, unhedged", result.unhedged.debt_capacity, "capacity-unhedged"],
    ["locked revenue", result.locked_revenue, "locked"],
    ["liquidity needed", result.liquidity_needed, "liquidity"],
  ];
  $("planner-figures").replaceChildren(...figures.map(([label, value, key]) =>
    el("div", { "data-figure": key }, el("dt", { text: label }), el("dd", { text: value }))));
  drawChart(result, asked);
  setAttr(box, "data-state", "done");
}

/** DSCR by month within the debt's tenor: hedged and unhedged, P50 to P99, the targets. */
function drawChart(result, asked) {
  const chart = $("planner-chart");
  const months = result.months.filter((m) => m.dscr !== null);
  const width = Math.max(300, Math.floor(chart.clientWidth || 700));
  const height = 220;
  const m = { top: 12, right: 12, bottom: 24, left: 46 };
  setAttr(chart, "viewBox", `0 0 ${width} ${height}`);
  const series = (side, key) => months.map((x) => Number(side === "hedged" ? x.dscr[key]
                                                                     : x.unhedged.dscr[key]));
  const targets = [Number(asked.dscr_p50 || "1.30"), Number(asked.dscr_p99 || "1.00")];
  const values = [...targets];
  for (const [side] of SIDES) for (const key of ["p50", "p90", "p99"]) values.push(...series(side, key));
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.08;
  lo -= pad; hi += pad;
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const x = (k) => m.left + ((k + 0.5) * plotW) / months.length;
  const y = (v) => m.top + plotH - ((v - lo) / (hi - lo)) * plotH;
  const line = (vals) => vals.map((v, k) => `${k ? "L" : "M"}${x(k).toFixed(1)},${y(v).toFixed(1)}`).join("");
  const g = [];
  for (let k = 0; k <= 4; k++) {
    const v = lo + ((hi - lo) * k) / 4;
    g.push(svg("line", { class: "gridline", x1: m.left, x2: width - m.right, y1: y(v).toFixed(1), y2: y(v).toFixed(1) }));
    g.push(svg("text", { class: "axis", x: m.left - 6, y: y(v).toFixed(1), dy: "0.32em", "text-anchor": "end" }, v.toFixed(2)));
  }
  const every = Math.max(1, Math.ceil(months.length / 12));
  months.forEach((mo, k) => {
    if (k % every === 0) {
      g.push(svg("text", { class: "axis", x: x(k).toFixed(1), y: height - 6, "text-anchor": "middle" }, mo.month));
    }
  });
  for (const [side] of SIDES) {
    const top = series(side, "p50");
    const bottom = series(side, "p99");
    const points = [...top.map((v, k) => `${x(k).toFixed(1)},${y(v).toFixed(1)}`),
                    ...bottom.map((v, k) => [k, v]).reverse().map(([k, v]) => `${x(k).toFixed(1)},${y(v).toFixed(1)}`)];
    g.push(svg("polygon", { class: `plan-band ${side}`, points: points.join(" ") }));
    g.push(svg("path", { class: `plan-line ${side} p50`, d: line(top) }));
    g.push(svg("path", { class: `plan-line ${side} p99`, d: line(bottom) }));
    if (side === "hedged") g.push(svg("path", { class: "plan-line hedged p90", d: line(series(side, "p90")) }));
  }
  for (const t of targets) {
    g.push(svg("line", { class: "plan-target", x1: m.left, x2: width - m.right, y1: y(t).toFixed(1), y2: y(t).toFixed(1) }));
    g.push(svg("text", { class: "axis", x: width - m.right, y: (y(t) - 4).toFixed(1), "text-anchor": "end" }, `target ${t.toFixed(2)}`));
  }
  chart.replaceChildren(...g);
}
