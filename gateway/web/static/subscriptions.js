/*
 * subscriptions.js: the channels the selection needs, and what each one's
 * notifications do.
 *
 * The selected class wants its curve.{class}, index.{class} and ticker.{symbol}
 * channels, the selected contract its book.{symbol} and trades.{symbol}.
 * syncSubscriptions() brings the socket's subscriptions to that, in one call
 * each way, asking again later when refused; a channel is then seeded with
 * what it alone does not give (recent trades, the index's history). A book
 * with a gap or a checksum mismatch is resubscribed for a fresh snapshot. The
 * instruments channel says each listing, status change and delisting as it
 * happens (a rolling listing, a cascade, a halt); the whole listing is fetched
 * again now and then all the same, to repair anything a reconnect missed.
 */

import { crc32 } from "./book.js";
import { notice } from "./dom.js";
import { isNum, num } from "./format.js";
import { call, conn, sleep } from "./link.js";
import { CANDLES_KEPT, MAX_TRADES, addIndexPoint, addTrades, candleTrades, changeListing,
         markDirty, seedIndex, setCandles, setIndex, setInstruments, state } from "./state.js";

const RESYNC_MIN_INTERVAL_MS = 500;
const RETRY_MIN_MS = 1_000;          // a refused subscribe is tried again, backing off
const RETRY_MAX_MS = 30_000;
const INSTRUMENTS_REFRESH_MS = 60_000;   // the instruments channel says changes as they come

const noop = () => {};

function wantedChannels() {
  const out = new Set(["instruments"]);
  if (state.cls) {
    out.add(`curve.${state.cls}`);
    out.add(`index.${state.cls}`);
    for (const inst of state.contracts.get(state.cls) || []) out.add(`ticker.${inst.symbol}`);
  }
  if (state.symbol) {
    out.add(`book.${state.symbol}`);
    out.add(`trades.${state.symbol}`);
  }
  return out;
}

let syncRunning = false;
let syncAgain = false;
let syncRetries = 0;                // failed subscribes in a row
let syncRetryTimer = 0;
const refreshing = new Set();       // channels whose local state needs seeding again

/** The local state of these channels was reset: subscribe them again on the next sync. */
export function refresh(...channels) {
  for (const c of channels) refreshing.add(c);
}

/** A subscribe that failed is not given up: try the whole sync again later. */
function retrySyncLater() {
  const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** syncRetries);
  syncRetries = Math.min(syncRetries + 1, 10);
  clearTimeout(syncRetryTimer);
  syncRetryTimer = setTimeout(syncSubscriptions, delay * (0.5 + Math.random() / 2));
}

/** Bring the socket's subscriptions to what the selection wants, in one call each way. */
export async function syncSubscriptions() {
  if (!conn.ready) return;
  if (syncRunning) {
    syncAgain = true;
    return;
  }
  syncRunning = true;
  try {
    do {
      syncAgain = false;
      const gen = conn.gen;
      const want = wantedChannels();
      const drop = [...conn.subs].filter((c) => !want.has(c));
      // A channel whose local state was reset (selected away and back while a sync
      // was running) is subscribed again: the server answers with its current state.
      const add = [...want].filter((c) => !conn.subs.has(c) || refreshing.has(c));
      refreshing.clear();
      if (drop.length) {
        for (const c of drop) conn.subs.delete(c);
        await call("unsubscribe", { channels: drop }).catch(noop);
        if (gen !== conn.gen) return;
      }
      if (add.length) {
        for (const c of add) conn.subs.add(c);
        try {
          await call("subscribe", { channels: add });
        } catch (err) {
          if (gen !== conn.gen) return;
          for (const c of add) conn.subs.delete(c);
          notice(`subscribe failed: ${err.message}; trying again`);
          retrySyncLater();
          return;
        }
        if (gen !== conn.gen) return;
        syncRetries = 0;
        for (const c of add) afterSubscribed(c, gen);
      }
    } while (syncAgain);
  } finally {
    syncRunning = false;
    // A request made while an old socket's sync was still unwinding: run it now.
    if (syncAgain) {
      syncAgain = false;
      queueMicrotask(syncSubscriptions);
    }
  }
}

/** Seed what a channel alone does not give: trade history, index history. */
function afterSubscribed(channel, gen) {
  const [kind, name] = splitChannel(channel);
  if (kind === "trades") {
    fetchTrades(name, gen);
    fetchCandles(name, gen);
  }
  else if (kind === "index") fetchIndex(name, gen);
}

async function fetchTrades(symbol, gen) {
  let list;
  try {
    list = await call("market.trades", { symbol, limit: MAX_TRADES });
  } catch (err) {
    return;
  }
  if (gen !== conn.gen || !state.trades || state.trades.symbol !== symbol) return;
  addTrades(list, false);
}

async function fetchCandles(symbol, gen) {
  let list;
  try {
    list = await call("market.candles", { symbol, interval: "1m", limit: CANDLES_KEPT });
  } catch (err) {
    return;
  }
  if (gen !== conn.gen || !state.candles || state.candles.symbol !== symbol) return;
  setCandles(symbol, list);
}

async function fetchIndex(cls, gen) {
  let view;
  try {
    view = await call("market.index", { gpu_class: cls, history: true });
  } catch (err) {
    return;
  }
  if (gen !== conn.gen || state.cls !== cls || !view) return;
  seedIndex(view);
}

async function resyncBook(book, why) {
  book.problem = why;
  book.awaitingSnapshot = true;
  markDirty("ladder");
  if (book.resyncing || !conn.ready) return;
  book.resyncing = true;
  const gen = conn.gen;
  const wait = book.lastResync + RESYNC_MIN_INTERVAL_MS - Date.now();
  if (wait > 0) await sleep(wait);
  book.lastResync = Date.now();
  const channel = `book.${book.symbol}`;
  try {
    if (gen === conn.gen && state.book === book && conn.subs.has(channel)) {
      await call("subscribe", { channels: [channel] });
    }
  } catch (err) {
    // Still waiting for a snapshot: ask again (resyncBook spaces its requests out).
    if (gen === conn.gen && state.book === book) {
      setTimeout(() => {
        if (gen === conn.gen && state.book === book && book.awaitingSnapshot) {
          resyncBook(book, why);
        }
      }, RETRY_MIN_MS);
    }
  } finally {
    book.resyncing = false;
  }
}

function splitChannel(channel) {
  const dot = channel.indexOf(".");
  return dot < 0 ? [channel, ""] : [channel.slice(0, dot), channel.slice(dot + 1)];
}

// -- Notifications --------------------------------------------------------------------

export function onNotification(channel, data) {
  if (!conn.subs.has(channel)) return;          // an unsubscribed channel's late message
  const [kind, name] = splitChannel(channel);
  switch (kind) {
    case "instruments":
      if (changeListing(data)) listingChanged();
      break;
    case "curve":
      if (Array.isArray(data)) {
        state.curve.set(name, data);
        if (name === state.cls) markDirty("curve", "table");
      }
      break;
    case "ticker":
      if (data && typeof data === "object") {
        state.tickers.set(name, data);
        markDirty("table");
        if (name === state.symbol) markDirty("stats");
      }
      break;
    case "index":
      if (data && typeof data === "object" && name === state.cls) {
        setIndex(data);
        const v = num(data.value);
        if (v !== null) addIndexPoint(isNum(data.time) ? data.time : Date.now(), v);
        markDirty("index", "curve");
      }
      break;
    case "book":
      if (state.book && state.book.symbol === name && data) onBook(state.book, data);
      break;
    case "trades":
      if (state.trades && state.trades.symbol === name && Array.isArray(data)) {
        addTrades(data, true);
        candleTrades(data);
      }
      break;
    default:
      break;
  }
}

function onBook(book, data) {
  if (data.type === "snapshot") {
    book.snapshot(data);
  } else if (data.type === "delta") {
    if (book.awaitingSnapshot) return;
    if (data.prev_seq !== book.seq) {
      resyncBook(book, "gap");
      return;
    }
    book.delta(data);
  } else {
    return;
  }
  book.seq = isNum(data.seq) ? data.seq : book.seq;
  if (isNum(data.checksum)) {
    book.verified = crc32(book.checksumText()) === data.checksum;
    if (!book.verified) resyncBook(book, "checksum");
  } else {
    book.verified = null;
  }
  markDirty("ladder");
}

// -- The listing ----------------------------------------------------------------------

let listingChanged = noop;

/** Follow the listing: a halt, a resumption, a contract listed or gone. ``onChange`` runs
 * after each change (the selection may have to move off a contract that is gone). */
export function followListing(onChange) {
  listingChanged = () => {
    onChange();
    syncSubscriptions();
  };
  let listedText = "";
  setInterval(async () => {
    if (!conn.ready) return;
    const gen = conn.gen;
    let instruments;
    try {
      instruments = await call("market.instruments");
    } catch (err) {
      return;                   // the next round, or the next connection, fetches it
    }
    const text = JSON.stringify(instruments);
    if (gen !== conn.gen || text === listedText) return;
    listedText = text;
    setInstruments(instruments);
    listingChanged();
  }, INSTRUMENTS_REFRESH_MS);
}
