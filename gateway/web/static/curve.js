/*
 * curve.js: the forward curve of the selected class, as a chart and as the
 * table of its months.
 *
 * Both show monthRows() (each month's instrument, curve row and ticker) and
 * choose a contract when a month is clicked or entered. The chart is SVG
 * drawn by hand: mark line, bid/ask band, last, the index as a dashed line.
 * The table's rows are built when the class changes, then updated in place.
 */

import { $, el, flash, setAttr, setText, svg } from "./dom.js";
import { fmtPrice, fmtQty, isNum, monthLong, niceScale, num, ticks } from "./format.js";
import { conn } from "./link.js";
import { selectSymbol } from "./selection.js";
import { monthRows, state } from "./state.js";

// -- The table of the months ----------------------------------------------------------

// Rows are built when the class changes, then updated in place.
let tableKey = "";
const tableRows = new Map();

export function renderTable() {
  const body = $("curve-table").tBodies[0];
  const rows = monthRows();
  const key = `${state.cls}|${rows.map((r) => r.symbol).join(",")}`;
  if (key !== tableKey) {
    tableKey = key;
    tableRows.clear();
    body.replaceChildren(...rows.map((r) => {
      const tr = el("tr", { "data-symbol": r.symbol, tabindex: "0" });
      const th = el("th", { scope: "row", class: "l" },
                    el("span", { class: "sym", text: r.symbol }),
                    el("span", { class: "tag" }));
      const cells = { bid: el("td"), ask: el("td"), last: el("td"), mark: el("td"),
                      svol: el("td"), oi: el("td") };
      tr.append(th, cells.bid, cells.ask, cells.last, cells.mark, cells.svol, cells.oi);
      tr.addEventListener("click", () => selectSymbol(r.symbol));
      tr.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          selectSymbol(r.symbol);
        }
      });
      tableRows.set(r.symbol, { tr, tag: th.lastChild, cells, last: null });
      return tr;
    }));
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

let curveLayout = "";
let curveHits = new Map();          // symbol -> {rect, title}

export function renderCurve() {
  const chart = $("curve-chart");
  const width = Math.max(240, Math.floor(chart.clientWidth || chart.getBoundingClientRect().width || 600));
  const height = Math.max(160, Math.floor(chart.clientHeight || 260));
  const rows = monthRows();
  const n = rows.length;
  const narrow = width < 520;
  const m = { top: 14, right: narrow ? 10 : 16, bottom: 30, left: narrow ? 42 : 50 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const band = n ? plotW / n : plotW;
  const cx = (i) => m.left + band * (i + 0.5);

  const indexValue = state.index ? num(state.index.value) : null;
  const values = [];
  for (const r of rows) {
    for (const v of [r.bid, r.ask, r.last, r.mark]) {
      const x = num(v);
      if (x !== null) values.push(x);
    }
  }
  if (indexValue !== null) values.push(indexValue);
  const scale = values.length
    ? niceScale(Math.min(...values), Math.max(...values), plotH < 200 ? 4 : 5)
    : null;
  const y = (v) => m.top + plotH - ((v - scale.lo) / (scale.hi - scale.lo)) * plotH;

  setAttr(chart, "viewBox", `0 0 ${width} ${height}`);

  // Layers: the data is redrawn on every render; the hit areas (focusable)
  // only when the layout changes, so keyboard focus survives updates.
  let dataLayer = chart.querySelector("g.data-layer");
  let hitLayer = chart.querySelector("g.hit-layer");
  if (!dataLayer) {
    dataLayer = svg("g", { class: "data-layer" });
    hitLayer = svg("g", { class: "hit-layer" });
    chart.append(dataLayer, hitLayer);
  }
  const layout = `${state.cls}|${rows.map((r) => r.symbol).join(",")}|${width}x${height}`;
  if (layout !== curveLayout) {
    curveLayout = layout;
    curveHits = new Map();
    hitLayer.replaceChildren(...rows.map((r, i) => {
      const rect = svg("rect", {
        class: "hit", x: (m.left + band * i).toFixed(1), y: 0, width: band.toFixed(1),
        height: height, "data-symbol": r.symbol, tabindex: "0", role: "button",
      });
      const title = svg("title");
      rect.append(title);
      rect.addEventListener("click", () => selectSymbol(r.symbol));
      rect.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          selectSymbol(r.symbol);
        }
      });
      curveHits.set(r.symbol, { rect, title });
      return rect;
    }));
  }

  const g = [];
  // Selected month highlight.
  rows.forEach((r, i) => {
    if (r.symbol === state.symbol) {
      g.push(svg("rect", { class: "sel-band", x: (m.left + band * i + 1).toFixed(1), y: m.top - 6,
                           width: Math.max(0, band - 2).toFixed(1), height: plotH + 6 + 22, rx: 4 }));
    }
  });

  // Grid and y axis.
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

  // X labels: every month, or every other one when crowded.
  const every = band < 34 ? 3 : band < 48 ? 2 : 1;
  rows.forEach((r, i) => {
    if (i % every !== 0 && r.symbol !== state.symbol) return;
    if (every > 1 && r.symbol !== state.symbol) {
      const selIndex = rows.findIndex((x) => x.symbol === state.symbol);
      if (selIndex >= 0 && Math.abs(selIndex - i) < every) return;    // no overlap with it
    }
    g.push(svg("text", { class: `axis x-label${r.symbol === state.symbol ? " sel" : ""}`,
                         x: cx(i).toFixed(1), y: m.top + plotH + 18, "text-anchor": "middle" }, r.label));
  });

  if (!scale) {
    g.push(svg("text", { class: "empty-chart", x: width / 2, y: m.top + plotH / 2, "text-anchor": "middle" },
               conn.state === "live" ? "no prices yet" : "waiting for the market…"));
  } else {
    // Index: a dashed horizontal line.
    if (indexValue !== null) {
      const yy = y(indexValue).toFixed(1);
      g.push(svg("line", { class: "index-line", x1: m.left, x2: width - m.right, y1: yy, y2: yy }));
      g.push(svg("text", { class: "index-label", x: width - m.right - 2, y: (Number(yy) - 5).toFixed(1),
                           "text-anchor": "end" }, `index ${state.index.value}`));
    }
    // Bid/ask: a band between the two, a tick at each.
    const half = Math.max(3, Math.min(11, band * 0.22));
    rows.forEach((r, i) => {
      const b = num(r.bid);
      const a = num(r.ask);
      const x = cx(i);
      if (b !== null && a !== null) {
        const top = y(Math.max(a, b));
        g.push(svg("rect", { class: "spread-band", x: (x - half).toFixed(1), y: top.toFixed(1),
                             width: (2 * half).toFixed(1), height: Math.max(1, y(Math.min(a, b)) - top).toFixed(1) }));
      }
      if (b !== null) {
        g.push(svg("line", { class: "bid-tick", x1: (x - half).toFixed(1), x2: (x + half).toFixed(1),
                             y1: y(b).toFixed(1), y2: y(b).toFixed(1) }));
      }
      if (a !== null) {
        g.push(svg("line", { class: "ask-tick", x1: (x - half).toFixed(1), x2: (x + half).toFixed(1),
                             y1: y(a).toFixed(1), y2: y(a).toFixed(1) }));
      }
    });
    // Mark: a line through the months that have one.
    let path = "";
    let pen = false;
    rows.forEach((r, i) => {
      const v = num(r.mark);
      if (v === null) {
        pen = false;
        return;
      }
      path += `${pen ? "L" : "M"}${cx(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (path) g.push(svg("path", { class: "mark-line", d: path }));
    rows.forEach((r, i) => {
      const v = num(r.mark);
      if (v !== null) g.push(svg("circle", { class: "mark-dot", cx: cx(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5 }));
    });
    // Last: a diamond.
    rows.forEach((r, i) => {
      const v = num(r.last);
      if (v === null) return;
      const x = cx(i);
      const yy = y(v);
      const s = 4.5;
      g.push(svg("path", { class: "last-dot",
                           d: `M${x.toFixed(1)},${(yy - s).toFixed(1)}l${s},${s}l${-s},${s}l${-s},${-s}z` }));
    });
  }
  dataLayer.replaceChildren(...g);

  rows.forEach((r) => {
    const hit = curveHits.get(r.symbol);
    if (!hit) return;
    hit.rect.classList.toggle("selected", r.symbol === state.symbol);
    setAttr(hit.rect, "aria-pressed", r.symbol === state.symbol ? "true" : "false");
    setAttr(hit.rect, "aria-label", `${r.symbol}, ${monthLong(r.inst.delivery_start)}`);
    setText(hit.title, `${r.symbol} (${monthLong(r.inst.delivery_start)})\n`
      + `bid ${fmtPrice(r.bid)}  ask ${fmtPrice(r.ask)}\n`
      + `last ${fmtPrice(r.last)}  mark ${fmtPrice(r.mark)}`);
  });
}
