/*
 * index_panel.js: the class's index: its value and source, its chart over the
 * last day, and the daily fixings.
 *
 * The chart is SVG drawn by hand from state.history (one point a minute),
 * at least a quarter of an hour wide; the table holds the last ten fixings.
 */

import { $, el, setAttr, setText, svg } from "./dom.js";
import { DASH, fmtHM, fmtPrice, fmtTime, isNum, niceScale } from "./format.js";
import { state } from "./state.js";

export function renderIndex() {
  const ix = state.index;
  setText($("index-value"), ix ? fmtPrice(ix.value) : DASH);
  setText($("index-source"), ix && ix.source ? `source: ${ix.source}` : "source –");
  setText($("index-time"), ix && ix.value !== null && isNum(ix.time) ? `as of ${fmtTime(ix.time)}` : "");
  renderIndexChart();
  const body = $("fixings").tBodies[0];
  const fixings = ix ? ix.fixings.slice(-10).reverse() : [];
  body.replaceChildren(...fixings.map((f) => el("tr", null,
    el("td", { class: "l", text: (f && f.date) || DASH }),
    el("td", { text: fmtPrice(f && f.value) }))));
  $("fixings-empty").hidden = fixings.length > 0;
}

function renderIndexChart() {
  const chart = $("index-chart");
  const width = Math.max(200, Math.floor(chart.clientWidth || 300));
  const height = Math.max(100, Math.floor(chart.clientHeight || 140));
  setAttr(chart, "viewBox", `0 0 ${width} ${height}`);
  const m = { top: 10, right: 10, bottom: 22, left: 46 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const pts = state.history;
  const g = [];
  if (!pts.length) {
    g.push(svg("text", { class: "empty-chart", x: width / 2, y: height / 2, "text-anchor": "middle" },
               "no index history yet"));
    chart.replaceChildren(...g);
    return;
  }
  const vs = pts.map((p) => p[1]);
  const scale = niceScale(Math.min(...vs), Math.max(...vs), 3);
  const t1 = pts[pts.length - 1][0];
  const t0 = Math.min(pts[0][0], t1 - 15 * 60_000);       // at least a quarter of an hour wide
  const x = (t) => m.left + ((t - t0) / Math.max(1, t1 - t0)) * plotW;
  const y = (v) => m.top + plotH - ((v - scale.lo) / (scale.hi - scale.lo)) * plotH;
  for (const t of scale.ticks) {
    const yy = y(t).toFixed(1);
    g.push(svg("line", { class: "gridline", x1: m.left, x2: width - m.right, y1: yy, y2: yy }));
    g.push(svg("text", { class: "axis y-label", x: m.left - 6, y: yy, dy: "0.32em", "text-anchor": "end" },
               t.toFixed(scale.decimals)));
  }
  const labels = width < 300 ? 2 : 3;
  for (let k = 0; k <= labels; k++) {
    const t = t0 + ((t1 - t0) * k) / labels;
    g.push(svg("text", { class: "axis x-label", x: x(t).toFixed(1), y: height - 6,
                         "text-anchor": k === 0 ? "start" : k === labels ? "end" : "middle" }, fmtHM(t)));
  }
  let d = "";
  pts.forEach((p, i) => { d += `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`; });
  const area = `${d}L${x(t1).toFixed(1)},${(m.top + plotH).toFixed(1)}L${x(pts[0][0]).toFixed(1)},${(m.top + plotH).toFixed(1)}Z`;
  g.push(svg("path", { class: "index-area", d: area }));
  g.push(svg("path", { class: "index-path", d }));
  const last = pts[pts.length - 1];
  g.push(svg("circle", { class: "index-dot", cx: x(last[0]).toFixed(1), cy: y(last[1]).toFixed(1), r: 3 }));
  chart.replaceChildren(...g);
}
