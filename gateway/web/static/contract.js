/*
 * contract.js: the selected contract's panels: its ladder, its figures and its trades.
 *
 * The ladder shows ten levels a side of the local book with depth bars, the
 * spread and mid, and whether the book's seq and checksum hold. The figures
 * are the contract's terms and its ticker. The trades are the newest first,
 * reconciled in place so that a row shown once is not drawn again.
 */

import { $, el, setAttr, setText, svg } from "./dom.js";
import { DASH, QTY_FORMAT, fmtHM, fmtPrice, fmtQty, fmtTime, isNum, niceScale, num, periodLong,
         ticks } from "./format.js";
import { conn } from "./link.js";
import { curveRows, state } from "./state.js";

const LADDER_DEPTH = 10;

// -- The ladder -----------------------------------------------------------------------

let ladderRows = null;          // {asks: [tr...], bids: [tr...]} built once

function buildLadder() {
  const table = $("ladder");
  const make = (side) => {
    const list = [];
    for (let i = 0; i < LADDER_DEPTH; i++) {
      const tr = el("tr", { class: `level ${side}` }, el("td", { class: "price" }), el("td"), el("td"));
      list.push(tr);
    }
    return list;
  };
  ladderRows = { asks: make("ask"), bids: make("bid") };
  table.querySelector("tbody.asks").replaceChildren(...ladderRows.asks);
  table.querySelector("tbody.bids").replaceChildren(...ladderRows.bids);
}

function fillLevel(tr, level, side, depth, maxDepth) {
  const [price, qty, orders] = level || [null, null, null];
  setAttr(tr, "data-side", level ? side : null);
  setAttr(tr, "data-price", level ? price : null);
  tr.classList.toggle("empty", !level);
  setText(tr.cells[0], level ? fmtPrice(price) : "");
  setText(tr.cells[1], level ? fmtQty(qty) : "");
  setText(tr.cells[2], level ? (isNum(orders) ? fmtQty(orders) : DASH) : "");
  const pct = level && maxDepth > 0 ? Math.max(1, Math.round((depth / maxDepth) * 1000) / 10) : 0;
  tr.style.setProperty("--depth", `${pct}%`);
}

export function renderLadder() {
  if (!ladderRows) buildLadder();
  const book = state.book;
  setText($("selected"), state.symbol || DASH);
  for (const node of document.querySelectorAll(".js-symbol")) setText(node, state.symbol || "");
  const bids = book ? book.bids.slice(0, LADDER_DEPTH) : [];
  const asks = book ? book.asks.slice(0, LADDER_DEPTH) : [];
  let cum = 0;
  const bidDepth = bids.map((l) => (cum += l[1]));
  cum = 0;
  const askDepth = asks.map((l) => (cum += l[1]));
  const maxDepth = Math.max(bidDepth[bidDepth.length - 1] || 0, askDepth[askDepth.length - 1] || 0);
  // Asks: the best at the bottom, next to the spread; empty rows pad the top.
  for (let i = 0; i < LADDER_DEPTH; i++) {
    const k = LADDER_DEPTH - 1 - i;
    fillLevel(ladderRows.asks[i], asks[k], "ask", askDepth[k], maxDepth);
    fillLevel(ladderRows.bids[i], bids[i], "bid", bidDepth[i], maxDepth);
  }
  const spread = $("spread");
  const bt = bids.length ? ticks(bids[0][0]) : null;
  const at = asks.length ? ticks(asks[0][0]) : null;
  if (bt !== null && at !== null) {
    const mid = (bt + at) / 2;
    const midText = Number.isInteger(mid) ? (mid / 1000).toFixed(3) : (mid / 1000).toFixed(4);
    setText(spread, `spread ${((at - bt) / 1000).toFixed(3)} · mid ${midText}`);
  } else if (book && book.seq !== null) {
    setText(spread, bt === null && at === null ? "empty book" : `spread ${DASH} · one side only`);
  } else {
    setText(spread, DASH);
  }
  const bs = $("book-state");
  let text;
  let kind;
  if (!book) {
    text = DASH;
    kind = "none";
  } else if (conn.state !== "live") {
    text = book.seq === null ? "no book yet" : `seq ${book.seq} · stale`;
    kind = "stale";
  } else if (book.awaitingSnapshot) {
    text = book.problem === "gap" ? "gap in seq · resyncing…"
      : book.problem === "checksum" ? "checksum mismatch · resyncing…" : "loading book…";
    kind = book.problem ? "bad" : "wait";
  } else if (book.verified === true) {
    text = `seq ${book.seq} ✓ checksum`;
    kind = "ok";
  } else if (book.verified === false) {
    text = `seq ${book.seq} ✗ checksum`;
    kind = "bad";
  } else {
    text = `seq ${book.seq}`;
    kind = "wait";
  }
  setText(bs, text);
  setAttr(bs, "data-check", kind);
  renderContractInfo();
}

function renderContractInfo() {
  const inst = state.symbol ? state.bySymbol.get(state.symbol) : null;
  const info = $("contract-info");
  if (!inst) {
    setText(info, "");
    return;
  }
  const parts = [
    `delivery ${periodLong(inst)}`,
    isNum(inst.contract_hours) ? `${QTY_FORMAT.format(inst.contract_hours)} GPU-h a contract` : null,
    inst.band_low && inst.band_high ? `band ${inst.band_low}–${inst.band_high}` : null,
    inst.status ? inst.status.replace("_", " ") : null,
    inst.halt_reason ? inst.halt_reason : null,
    Array.isArray(inst.cascades_into) && inst.cascades_into.length
      ? `cascades into ${inst.cascades_into.join(", ")}` : null,
  ].filter(Boolean);
  setText(info, parts.join(" · "));
}

export function renderStats() {
  const t = (state.symbol && state.tickers.get(state.symbol)) || {};
  const row = curveRows().find((r) => r.symbol === state.symbol) || {};
  setText($("stat-last"), fmtPrice(t.last_price ?? row.last ?? null));
  setText($("stat-mark"), fmtPrice(t.mark_price ?? row.mark ?? null));
  setText($("stat-index"), fmtPrice(t.index_price ?? (state.index ? state.index.value : null)));
  setText($("stat-volume"), fmtQty(t.volume));
  setText($("stat-svol"), fmtQty(t.session_volume));
  setText($("stat-oi"), fmtQty(t.open_interest));
  const last = t.last_price ?? row.last ?? null;
  document.title = state.symbol
    ? `${last !== null ? `${last} ` : ""}${state.symbol} · gpux`
    : "gpux · GPU-hour forwards";
}

// -- Trades ---------------------------------------------------------------------------

const tradeRows = new Map();        // trade_id -> tr
let tradesSymbol = null;

export function renderTrades() {
  const body = $("trades").tBodies[0];
  const t = state.trades;
  if (!t || t.symbol !== tradesSymbol) {
    tradeRows.clear();
    tradesSymbol = t ? t.symbol : null;
  }
  const list = t ? t.list : [];
  const keep = new Set();
  const rows = list.map((trade) => {
    keep.add(trade.trade_id);
    let tr = tradeRows.get(trade.trade_id);
    if (!tr) {
      const side = trade.aggressor === "buy" || trade.aggressor === "sell" ? trade.aggressor : "";
      tr = el("tr", { "data-trade-id": String(trade.trade_id), class: side },
              el("td", { class: "l time", text: fmtTime(trade.time) }),
              el("td", { class: `px ${side === "buy" ? "bid" : side === "sell" ? "ask" : ""}`,
                         text: fmtPrice(trade.price) }),
              el("td", { text: fmtQty(trade.qty) }),
              el("td", { class: `aggr ${side}`, text: side || DASH }));
      if (t.fresh.has(trade.trade_id)) tr.classList.add("flash-new");
      tradeRows.set(trade.trade_id, tr);
    }
    return tr;
  });
  if (t) t.fresh.clear();
  for (const id of [...tradeRows.keys()]) if (!keep.has(id)) tradeRows.delete(id);
  // Reconcile in place: new trades go in at the top and the rest stay put, so
  // rows already shown are not re-inserted (which would replay their flash).
  rows.forEach((tr, i) => {
    const at = body.children[i];
    if (at !== tr) body.insertBefore(tr, at || null);
  });
  while (body.children.length > rows.length) body.lastElementChild.remove();
  $("trades-empty").hidden = rows.length > 0 || !(t && t.loaded);
}

// -- Price chart ----------------------------------------------------------------------

/** The chosen contract's one-minute candles (market.candles, then its trades). */
export function renderCandles() {
  const chart = $("price-chart");
  const list = state.candles ? state.candles.list : [];
  const width = Math.max(200, Math.floor(chart.clientWidth || 300));
  const height = 120;
  const m = { top: 8, right: 8, bottom: 18, left: 42 };
  setAttr(chart, "viewBox", `0 0 ${width} ${height}`);
  if (!list.length) {
    chart.replaceChildren(svg("text", { class: "empty-chart", x: width / 2, y: height / 2,
                                        "text-anchor": "middle" }, "no trades yet"));
    return;
  }
  const lows = list.map((c) => num(c.low));
  const highs = list.map((c) => num(c.high));
  const scale = niceScale(Math.min(...lows), Math.max(...highs), 3);
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const first = list[0].time;
  const span = Math.max(60_000, list[list.length - 1].time - first + 60_000);
  const x = (t) => m.left + ((t - first) / span) * plotW;
  const y = (v) => m.top + plotH - ((v - scale.lo) / (scale.hi - scale.lo)) * plotH;
  const bar = Math.max(1, Math.min(8, (plotW * 60_000) / span - 1));
  const g = [];
  for (const t of scale.ticks) {
    g.push(svg("line", { class: "gridline", x1: m.left, x2: width - m.right, y1: y(t).toFixed(1), y2: y(t).toFixed(1) }));
    g.push(svg("text", { class: "axis", x: m.left - 5, y: y(t).toFixed(1), dy: "0.32em", "text-anchor": "end" },
               t.toFixed(scale.decimals)));
  }
  g.push(svg("text", { class: "axis", x: m.left, y: height - 4 }, fmtHM(first)));
  g.push(svg("text", { class: "axis", x: width - m.right, y: height - 4, "text-anchor": "end" },
             fmtHM(list[list.length - 1].time)));
  for (const c of list) {
    const up = num(c.close) >= num(c.open);
    const cx = x(c.time) + bar / 2;
    g.push(svg("line", { class: `wick ${up ? "up" : "down"}`, x1: cx.toFixed(1), x2: cx.toFixed(1),
                         y1: y(num(c.high)).toFixed(1), y2: y(num(c.low)).toFixed(1) }));
    const top = y(Math.max(num(c.open), num(c.close)));
    g.push(svg("rect", { class: `candle ${up ? "up" : "down"}`, x: x(c.time).toFixed(1), y: top.toFixed(1),
                         width: bar.toFixed(1), height: Math.max(1, y(Math.min(num(c.open), num(c.close))) - top).toFixed(1) }));
  }
  chart.replaceChildren(...g);
}
