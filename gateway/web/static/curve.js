/*
 * curve.js: the forward curve of the selected class, as a chart and as the
 * table of its contracts: months, quarters and years.
 *
 * Both show curveRows() (each contract's instrument, curve row and ticker)
 * and choose a contract when one is clicked or entered. The chart is SVG
 * drawn by hand on a time axis: each contract spans its delivery period, a
 * month as a point of the mark line, a quarter or a year as a level over its
 * months (where a strip of them would trade), with its bid/ask band, last, and
 * the index as a dashed line. Below the plot, one lane per tenor holds a box
 * for each contract: what you click. The table's rows are built when the
 * listing changes, then updated in place.
 */

import { $, el, flash, setAttr, setText, svg } from "./dom.js";
import { fmtPrice, fmtQty, isNum, niceScale, num, periodLong, ticks } from "./format.js";
import { conn } from "./link.js";
import { selectSymbol } from "./selection.js";
import { curveRows, state } from "./state.js";

const GROUP_NAMES = { week: "Weeks", month: "Months", quarter: "Quarters", year: "Years" };

function chooseOnKey(node, symbol) {
  node.addEventListener("click", () => selectSymbol(symbol));
  node.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      selectSymbol(symbol);
    }
  });
}

// -- The table of the contracts -------------------------------------------------------

let tableKey = "";
const tableRows = new Map();

export function renderTable() {
  const body = $("curve-table").tBodies[0];
  const rows = curveRows();
  const key = `${state.cls}|${rows.map((r) => r.symbol).join(",")}`;
  if (key !== tableKey) {
    tableKey = key;
    tableRows.clear();
    const built = [];
    let group = null;
    for (const r of rows) {
      if (r.tenor !== group) {
        group = r.tenor;
        built.push(el("tr", { class: "group" },
                      el("th", { scope: "rowgroup", colspan: "7", class: "l",
                                 text: GROUP_NAMES[group] || group })));
      }
      const tr = el("tr", { "data-symbol": r.symbol, "data-tenor": r.tenor, tabindex: "0" });
      const th = el("th", { scope: "row", class: "l" },
                    el("span", { class: "sym", text: r.symbol }),
                    el("span", { class: "tag" }));
      const cells = { bid: el("td"), ask: el("td"), last: el("td"), mark: el("td"),
                      svol: el("td"), oi: el("td") };
      tr.append(th, cells.bid, cells.ask, cells.last, cells.mark, cells.svol, cells.oi);
      chooseOnKey(tr, r.symbol);
      tableRows.set(r.symbol, { tr, tag: th.lastChild, cells, last: null });
      built.push(tr);
    }
    body.replaceChildren(...built);
  }
  for (const r of rows) {
    const row = tableRows.get(r.symbol);
    if (!row) continue;
    const t = r.ticker;
    const selected = r.symbol === state.symbol;
    row.tr.classList.toggle("selected", selected);
    setAttr(row.tr, "aria-current", selected ? "true" : null);
    const status = r.inst.status || "";
    setText(row.tag, status && status !== "open" ? status.replace("_", " ") : "");
    setAttr(row.tag, "title", r.inst.halt_reason || null);
    setPriceQty(row.cells.bid, t.best_bid ?? r.bid, t.best_bid_qty, "bid");
    setPriceQty(row.cells.ask, t.best_ask ?? r.ask, t.best_ask_qty, "ask");
    const last = t.last_price ?? r.last;
    setText(row.cells.last, fmtPrice(last));
    if (row.last !== null && last !== null && last !== row.last) {
      flash(row.cells.last, ticks(last) > ticks(row.last) ? "up" : "down");
    }
    row.last = last;
    setText(row.cells.mark, fmtPrice(t.mark_price ?? r.mark));
    setText(row.cells.svol, fmtQty(t.session_volume));
    setText(row.cells.oi, fmtQty(t.open_interest));
  }
}

function setPriceQty(td, price, qty, side) {
  let px = td.firstChild;
  if (!px) {
    px = el("span", { class: `px ${side}` });
    td.append(px, el("span", { class: "qty" }));
  }
  setText(px, fmtPrice(price));
  setText(td.lastChild, price !== null && price !== undefined && isNum(qty) ? ` (${fmtQty(qty)})` : "");
}

// -- The forward curve chart ----------------------------------------------------------

const LANE = 17;                    // px: one lane of contract boxes per tenor
let curveLayout = "";
let curveHits = new Map();          // symbol -> {rect, title}

/** The chart's geometry: a time axis over every contract's delivery, and the lanes. */
function layout(rows, width, height) {
  const narrow = width < 520;
  const tenors = [...new Set(rows.map((r) => r.tenor))];
  const m = { top: 14, right: narrow ? 10 : 16, left: narrow ? 42 : 50 };
  m.bottom = tenors.length * LANE + 22;
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const valid = rows.filter((r) => isNum(r.start) && isNum(r.end) && r.end > r.start);
  const t0 = valid.length ? Math.min(...valid.map((r) => r.start)) : 0;
  const t1 = valid.length ? Math.max(...valid.map((r) => r.end)) : 1;
  const x = (t) => m.left + ((t - t0) / Math.max(1, t1 - t0)) * plotW;
  const lane = (r) => m.top + plotH + 6 + tenors.indexOf(r.tenor) * LANE;
  return { m, plotW, plotH, t0, t1, x, lane, tenors };
}

export function renderCurve() {
  const chart = $("curve-chart");
  const width = Math.max(240, Math.floor(chart.clientWidth || chart.getBoundingClientRect().width || 600));
  const height = Math.max(200, Math.floor(chart.clientHeight || 300));
  const rows = curveRows();
  const geo = layout(rows, width, height);
  const { m, plotH, x, lane } = geo;

  const indexValue = state.index ? num(state.index.value) : null;
  const values = [];
  for (const r of rows) {
    for (const v of [r.bid, r.ask, r.last, r.mark]) {
      const p = num(v);
      if (p !== null) values.push(p);
    }
  }
  if (indexValue !== null) values.push(indexValue);
  const scale = values.length
    ? niceScale(Math.min(...values), Math.max(...values), plotH < 200 ? 4 : 5)
    : null;
  const y = (v) => m.top + plotH - ((v - scale.lo) / (scale.hi - scale.lo)) * plotH;

  setAttr(chart, "viewBox", `0 0 ${width} ${height}`);

  // Layers: the data is redrawn on every render; the contract boxes (focusable) only
  // when the layout changes, so keyboard focus survives updates.
  let dataLayer = chart.querySelector("g.data-layer");
  let hitLayer = chart.querySelector("g.hit-layer");
  if (!dataLayer) {
    dataLayer = svg("g", { class: "data-layer" });
    hitLayer = svg("g", { class: "hit-layer" });
    chart.append(dataLayer, hitLayer);
  }
  const key = `${state.cls}|${rows.map((r) => r.symbol).join(",")}|${width}x${height}`;
  if (key !== curveLayout) {
    curveLayout = key;
    curveHits = new Map();
    const boxes = [];
    const labels = [];
    for (const r of rows) {
      const x0 = x(r.start);
      const w = Math.max(2, x(r.end) - x0 - 1);
      const rect = svg("rect", {
        class: `hit lane-box ${r.tenor}`, x: x0.toFixed(1), y: lane(r).toFixed(1),
        width: w.toFixed(1), height: LANE - 3, rx: 3, "data-symbol": r.symbol,
        "data-tenor": r.tenor, tabindex: "0", role: "button",
      });
      const title = svg("title");
      rect.append(title);
      chooseOnKey(rect, r.symbol);
      curveHits.set(r.symbol, { rect, title });
      boxes.push(rect);
      if (w >= r.label.length * 6.2 + 6) {
        labels.push(svg("text", { class: "lane-label", x: (x0 + w / 2).toFixed(1),
                                  y: (lane(r) + LANE / 2 + 2).toFixed(1),
                                  "text-anchor": "middle" }, r.label));
      }
    }
    hitLayer.replaceChildren(...boxes, ...labels);
  }

  const g = [];
  const selected = rows.find((r) => r.symbol === state.symbol);
  if (selected) {            // the selected contract's period, over the plot and its box
    g.push(svg("rect", { class: "sel-band", x: x(selected.start).toFixed(1), y: m.top - 6,
                         width: Math.max(2, x(selected.end) - x(selected.start) - 1).toFixed(1),
                         height: lane(selected) + LANE - m.top + 3, rx: 4 }));
  }
  if (scale) {
    for (const t of scale.ticks) {
      const yy = y(t).toFixed(1);
      g.push(svg("line", { class: "gridline", x1: m.left, x2: width - m.right, y1: yy, y2: yy }));
      g.push(svg("text", { class: "axis y-label", x: m.left - 6, y: yy, dy: "0.32em", "text-anchor": "end" },
                 t.toFixed(scale.decimals)));
    }
  }
  g.push(svg("line", { class: "axis-line", x1: m.left, x2: width - m.right,
                       y1: m.top + plotH, y2: m.top + plotH }));
  g.push(...yearAxis(geo, height));

  if (!scale) {
    g.push(svg("text", { class: "empty-chart", x: width / 2, y: m.top + plotH / 2, "text-anchor": "middle" },
               conn.state === "live" ? "no prices yet" : "waiting for the market…"));
  } else {
    if (indexValue !== null) {
      const yy = y(indexValue).toFixed(1);
      g.push(svg("line", { class: "index-line", x1: m.left, x2: width - m.right, y1: yy, y2: yy }));
      g.push(svg("text", { class: "index-label", x: width - m.right - 2, y: (Number(yy) - 5).toFixed(1),
                           "text-anchor": "end" }, `index ${state.index.value}`));
    }
    // Longer periods first, so the months are drawn over the quarters and years.
    for (const r of [...rows].reverse()) g.push(...contractMarks(r, x, y));
    g.push(...monthLine(rows, x, y));
  }
  dataLayer.replaceChildren(...g);

  rows.forEach((r) => {
    const hit = curveHits.get(r.symbol);
    if (!hit) return;
    hit.rect.classList.toggle("selected", r.symbol === state.symbol);
    setAttr(hit.rect, "aria-pressed", r.symbol === state.symbol ? "true" : "false");
    setAttr(hit.rect, "aria-label", `${r.symbol}, ${periodLong(r.inst)}`);
    setText(hit.title, `${r.symbol} (${periodLong(r.inst)})\n`
      + `bid ${fmtPrice(r.bid)}  ask ${fmtPrice(r.ask)}\n`
      + `last ${fmtPrice(r.last)}  mark ${fmtPrice(r.mark)}`);
  });
}

/** A tick at each new year, and its label under the lanes unless a lane of years is there. */
function yearAxis(geo, height) {
  const out = [];
  const first = new Date(geo.t0).getUTCFullYear();
  const last = new Date(geo.t1).getUTCFullYear();
  for (let year = first; year <= last; year += 1) {
    const start = Math.max(geo.t0, Date.UTC(year, 0, 1));
    const end = Math.min(geo.t1, Date.UTC(year + 1, 0, 1));
    if (end <= start) continue;
    const x0 = geo.x(start);
    if (start > geo.t0) {
      out.push(svg("line", { class: "year-tick", x1: x0.toFixed(1), x2: x0.toFixed(1),
                             y1: geo.m.top, y2: height - 4 }));
    }
    const mid = (x0 + geo.x(end)) / 2;
    if (geo.x(end) - x0 > 30 && !geo.tenors.includes("year")) {   // the years' lane says it
      out.push(svg("text", { class: "axis x-label", x: mid.toFixed(1), y: height - 6,
                             "text-anchor": "middle" }, String(year)));
    }
  }
  return out;
}

/** Bid/ask, mark and last of one contract over its delivery period. */
function contractMarks(r, x, y) {
  const out = [];
  const b = num(r.bid);
  const a = num(r.ask);
  const x0 = x(r.start);
  const x1 = x(r.end);
  const month = r.tenor === "month" || r.tenor === "week";
  // A month's prices sit at its middle, a longer period's across it (inset a little).
  const half = month ? Math.max(3, Math.min(9, (x1 - x0) * 0.3)) : Math.max(3, (x1 - x0) / 2 - 2);
  const cx = (x0 + x1) / 2;
  if (b !== null && a !== null) {
    const top = y(Math.max(a, b));
    out.push(svg("rect", { class: `spread-band ${r.tenor}`, x: (cx - half).toFixed(1), y: top.toFixed(1),
                           width: (2 * half).toFixed(1), height: Math.max(1, y(Math.min(a, b)) - top).toFixed(1) }));
  }
  for (const [v, cls] of [[b, "bid-tick"], [a, "ask-tick"]]) {
    if (v === null) continue;
    out.push(svg("line", { class: `${cls} ${r.tenor}`, x1: (cx - half).toFixed(1), x2: (cx + half).toFixed(1),
                           y1: y(v).toFixed(1), y2: y(v).toFixed(1) }));
  }
  const mk = num(r.mark);
  if (mk !== null && !month) {
    out.push(svg("line", { class: `mark-seg ${r.tenor}`, x1: (cx - half).toFixed(1), x2: (cx + half).toFixed(1),
                           y1: y(mk).toFixed(1), y2: y(mk).toFixed(1) }));
  }
  const last = num(r.last);
  if (last !== null) {
    const yy = y(last);
    const s = 4.5;
    out.push(svg("path", { class: "last-dot",
                           d: `M${cx.toFixed(1)},${(yy - s).toFixed(1)}l${s},${s}l${-s},${s}l${-s},${-s}z` }));
  }
  return out;
}

/** The months' marks: a line through those that have one, a dot on each. */
function monthLine(rows, x, y) {
  const out = [];
  let path = "";
  let pen = false;
  for (const r of rows) {
    if (r.tenor !== "month") continue;
    const v = num(r.mark);
    if (v === null) {
      pen = false;
      continue;
    }
    path += `${pen ? "L" : "M"}${((x(r.start) + x(r.end)) / 2).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  }
  if (path) out.push(svg("path", { class: "mark-line", d: path }));
  for (const r of rows) {
    const v = num(r.mark);
    if (r.tenor !== "month" || v === null) continue;
    out.push(svg("circle", { class: "mark-dot", cx: ((x(r.start) + x(r.end)) / 2).toFixed(1),
                             cy: y(v).toFixed(1), r: 2.5 }));
  }
  return out;
}
