/*
 * state.js: what the page knows of the market, and which parts of the page
 * are out of date.
 *
 * Messages update `state` and mark parts of the page dirty; one
 * requestAnimationFrame pass renders whatever is dirty (the renderer app.js
 * gives drawWith()), so a burst of messages costs one render. Everything kept
 * is bounded (50 trades, a day of index points, one book). The updates here
 * only change `state`: asking the server is the subscriptions' job.
 */

import { isNum, num, periodLabel } from "./format.js";

export const MAX_TRADES = 50;
const HISTORY_POINT_MS = 60_000;
const HISTORY_KEPT = 24 * 60;

export const state = {
  instruments: [],            // as market.instruments, in listing order
  bySymbol: new Map(),        // symbol -> instrument
  classes: [],                // GPU classes in listing order
  contracts: new Map(),       // class -> its instruments: months, quarters, years, each by start
  cls: null,                  // selected GPU class
  symbol: null,               // selected contract
  wantedHash: null,           // a hash to apply once instruments are known
  curve: new Map(),           // class -> curve rows (the curve channel)
  tickers: new Map(),         // symbol -> ticker (the ticker channels of the class)
  index: null,                // {gpu_class, value, time, source, fixings}
  history: [],                // [[time ms, value number]] oldest first, one a minute
  book: null,                 // Book of the selected symbol
  trades: null,               // {symbol, list newest first, ids, fresh, loaded}
  candles: null,              // {symbol, list: [{time, open, high, low, close, volume}] oldest first}
};

const CANDLE_MS = 60_000;
export const CANDLES_KEPT = 120;   // two hours of one-minute candles

// -- Dirty parts and the render pass --------------------------------------------------

const dirty = new Set();
let frame = 0;
let draw = null;

/** Who renders: called once a frame with the set of dirty parts. */
export function drawWith(render) {
  draw = render;
}

export function markDirty(...parts) {
  for (const p of parts) dirty.add(p);
  if (!frame) frame = requestAnimationFrame(renderDirty);
}

function renderDirty() {
  frame = 0;
  const parts = new Set(dirty);
  dirty.clear();
  if (draw) draw(parts);
}

// -- Instruments ----------------------------------------------------------------------

const TENORS = ["week", "month", "quarter", "year"];
const tenorRank = (inst) => {
  const k = TENORS.indexOf(inst.tenor || "month");
  return k < 0 ? TENORS.length : k;
};

export function setInstruments(list) {
  const instruments = Array.isArray(list) ? list.filter((i) => i && i.symbol && i.gpu_class) : [];
  state.instruments = instruments;
  state.bySymbol = new Map(instruments.map((i) => [i.symbol, i]));
  const contracts = new Map();
  for (const inst of instruments) {
    if (!contracts.has(inst.gpu_class)) contracts.set(inst.gpu_class, []);
    contracts.get(inst.gpu_class).push(inst);
  }
  for (const list_ of contracts.values()) {
    list_.sort((a, b) => tenorRank(a) - tenorRank(b)
                         || String(a.delivery_start).localeCompare(String(b.delivery_start))
                         || a.symbol.localeCompare(b.symbol));
  }
  state.contracts = contracts;
  state.classes = [...contracts.keys()];
  markDirty("tabs", "table", "curve", "ladder", "stats");
}

/** One message of the instruments channel: a contract listed, changed or delisted. */
export function changeListing(data) {
  const inst = data && data.instrument;
  if (!inst || !inst.symbol || !inst.gpu_class) return false;
  const others = state.instruments.filter((i) => i.symbol !== inst.symbol);
  setInstruments(data.type === "delisted" ? others : [...others, inst]);
  return true;
}

/** The contract to show for a class: its first open month, else its first open contract. */
export function frontMonth(cls) {
  const all = state.contracts.get(cls) || [];
  const months = all.filter((i) => (i.tenor || "month") === "month");
  return (months.find((i) => i.status === "open") || all.find((i) => i.status === "open")
          || all.find((i) => i.status === "pre_open" || i.status === "halted")
          || all[0] || null);
}

/** Each contract of the selected class: instrument, curve row and ticker, merged. */
export function curveRows() {
  const contracts = state.contracts.get(state.cls) || [];
  const curve = new Map((state.curve.get(state.cls) || []).map((r) => [r && r.symbol, r]));
  return contracts.map((inst) => {
    const c = curve.get(inst.symbol) || {};
    const t = state.tickers.get(inst.symbol) || {};
    return {
      inst,
      symbol: inst.symbol,
      tenor: inst.tenor || "month",
      label: periodLabel(inst),
      start: Date.parse(inst.delivery_start),
      end: Date.parse(inst.delivery_end),
      bid: c.best_bid ?? null,
      ask: c.best_ask ?? null,
      last: c.last_price ?? null,
      mark: c.mark_price ?? null,
      ticker: t,
    };
  });
}

// -- The index ------------------------------------------------------------------------

export function setIndex(data) {
  state.index = {
    gpu_class: data.gpu_class,
    value: data.value ?? null,
    time: isNum(data.time) ? data.time : null,
    source: data.source ?? null,
    fixings: Array.isArray(data.fixings) ? data.fixings : [],
  };
}

/** One point a minute, the last value of the minute, as the server keeps it. */
export function addIndexPoint(time, value) {
  const h = state.history;
  const minute = Math.floor(time / HISTORY_POINT_MS);
  const last = h[h.length - 1];
  if (last && Math.floor(last[0] / HISTORY_POINT_MS) === minute) {
    if (time >= last[0]) h[h.length - 1] = [time, value];
  } else if (!last || time > last[0]) {
    h.push([time, value]);
    if (h.length > HISTORY_KEPT) h.splice(0, h.length - HISTORY_KEPT);
  }
}

/** The history from market.index (with history: true) under what the channel brought. */
export function seedIndex(view) {
  const points = [];
  for (const p of Array.isArray(view.history) ? view.history : []) {
    const v = num(p && p.value);
    if (v !== null && isNum(p.time)) points.push([p.time, v]);
  }
  // Keep what the channel brought since the history was taken.
  const lastMinute = points.length ? Math.floor(points[points.length - 1][0] / HISTORY_POINT_MS) : -Infinity;
  const newer = state.history.filter((p) => Math.floor(p[0] / HISTORY_POINT_MS) > lastMinute);
  state.history = [];
  for (const p of points.concat(newer)) addIndexPoint(p[0], p[1]);
  if (!state.index) setIndex(view);
  markDirty("index");
}

// -- Trades ---------------------------------------------------------------------------

function compareTrades(a, b) {
  if (a.time !== b.time) return (b.time || 0) - (a.time || 0);
  if (isNum(a.trade_id) && isNum(b.trade_id)) return b.trade_id - a.trade_id;
  return String(b.trade_id).localeCompare(String(a.trade_id));
}

/** The selected contract's candles as market.candles gave them (replacing what is kept). */
export function setCandles(symbol, list) {
  if (!state.candles || state.candles.symbol !== symbol || !Array.isArray(list)) return;
  state.candles.list = list.filter((c) => c && isNum(c.time)).slice(-CANDLES_KEPT);
  markDirty("candles");
}

/** Live trades of the selected contract into its one-minute candles. */
export function candleTrades(trades) {
  const c = state.candles;
  if (!c) return;
  for (const t of trades) {
    if (!t || !isNum(t.time)) continue;
    const start = t.time - (t.time % CANDLE_MS);
    const last = c.list[c.list.length - 1];
    const price = num(t.price);
    if (last && last.time === start) {
      if (price > num(last.high)) last.high = t.price;
      if (price < num(last.low)) last.low = t.price;
      last.close = t.price;
      last.volume += t.qty;
    } else if (!last || start > last.time) {
      c.list.push({ time: start, open: t.price, high: t.price, low: t.price, close: t.price,
                    volume: t.qty });
      if (c.list.length > CANDLES_KEPT) c.list.splice(0, c.list.length - CANDLES_KEPT);
    }
  }
  markDirty("candles");
}

export function addTrades(list, live) {
  const t = state.trades;
  let added = false;
  for (const trade of list) {
    if (!trade || trade.trade_id === undefined || t.ids.has(trade.trade_id)) continue;
    t.ids.add(trade.trade_id);
    t.list.push(trade);
    if (live && t.loaded) t.fresh.add(trade.trade_id);
    added = true;
  }
  if (!live) t.loaded = true;
  if (!added) {
    markDirty("trades");
    return;
  }
  t.list.sort(compareTrades);
  if (t.list.length > MAX_TRADES) {
    for (const old of t.list.splice(MAX_TRADES)) {
      t.ids.delete(old.trade_id);
      t.fresh.delete(old.trade_id);
    }
  }
  markDirty("trades");
}
