/*
 * selection.js: the chosen GPU class and contract, and the URL hash that names them.
 *
 * A choice (a tab, a month on the chart or in the table, the hash) resets what
 * was kept for the class or contract left, marks the new channels to be
 * seeded again and syncs the subscriptions. The hash holds the contract
 * (/#H100-2027-03); a class name or nothing there means its front month.
 */

import { Book } from "./book.js";
import { frontMonth, markDirty, state } from "./state.js";
import { refresh, syncSubscriptions } from "./subscriptions.js";

/** The (class, symbol) a hash names: a symbol, a class, or the default. */
function resolveHash(hash) {
  const name = decodeURIComponent(String(hash || "").replace(/^#/, "")).trim();
  const inst = state.bySymbol.get(name) || state.bySymbol.get(name.toUpperCase());
  if (inst) return [inst.gpu_class, inst.symbol];
  const byName = state.classes.find((c) => c.toLowerCase() === name.toLowerCase());
  const cls = byName || (state.classes.includes("H100") ? "H100" : state.classes[0]);
  if (!cls) return [null, null];
  const front = frontMonth(cls);
  return [cls, front ? front.symbol : null];
}

export function applyHash(hash, fromUser) {
  if (!state.instruments.length) {
    state.wantedHash = hash;
    return;
  }
  state.wantedHash = null;
  const [cls, symbol] = resolveHash(hash);
  select(cls, symbol, !fromUser || String(hash || "").replace(/^#/, "") !== symbol);
}

function select(cls, symbol, writeHash = true) {
  if (cls !== state.cls) {
    state.cls = cls;
    state.index = null;
    state.history = [];
    for (const s of [...state.tickers.keys()]) {
      const inst = state.bySymbol.get(s);
      if (!inst || inst.gpu_class !== cls) state.tickers.delete(s);
    }
    for (const c of [...state.curve.keys()]) if (c !== cls) state.curve.delete(c);
    if (cls) {
      refresh(`curve.${cls}`, `index.${cls}`,
              ...(state.contracts.get(cls) || []).map((inst) => `ticker.${inst.symbol}`));
    }
    markDirty("tabs", "table", "curve", "index");
  }
  if (symbol !== state.symbol) {
    state.symbol = symbol;
    state.book = symbol ? new Book(symbol) : null;
    state.trades = symbol ? { symbol, list: [], ids: new Set(), fresh: new Set(), loaded: false } : null;
    state.candles = symbol ? { symbol, list: [] } : null;
    if (symbol) refresh(`book.${symbol}`, `trades.${symbol}`);
    markDirty("ladder", "trades", "table", "curve", "stats", "candles");
  }
  if (writeHash && symbol && location.hash !== `#${symbol}`) {
    history.replaceState(null, "", `#${symbol}`);
  }
  syncSubscriptions();
}

export function selectSymbol(symbol) {
  const inst = state.bySymbol.get(symbol);
  if (inst) select(inst.gpu_class, inst.symbol);
}

/** After a listing change: a contract that is gone gives way to its class's front month. */
export function keepSelection() {
  if (state.symbol && !state.bySymbol.has(state.symbol)) {
    const front = state.cls ? frontMonth(state.cls) : null;
    select(state.cls, front ? front.symbol : null);
  }
}

export function selectClass(cls) {
  if (cls === state.cls) return;
  const front = frontMonth(cls);
  select(cls, front ? front.symbol : null);
}
