/*
 * gpux market page: a read-only view of the exchange over its public websocket.
 *
 * The page is an anonymous client of the wire protocol (PROTOCOL.md): it
 * fetches the instruments, subscribes to the curve, index and tickers of the
 * selected GPU class and to the book and trades of the selected contract, and
 * renders them. It never logs in and never sends an order.
 *
 * Data flow: messages update `state` and mark parts of the page dirty; one
 * requestAnimationFrame pass renders whatever is dirty, so a burst of
 * messages costs one render. Everything kept is bounded (50 trades, a day of
 * index points, one book).
 */
"use strict";

(() => {
  // -- Constants ----------------------------------------------------------------------

  const SVG_NS = "http://www.w3.org/2000/svg";
  const DASH = "–";
  const MAX_TRADES = 50;
  const LADDER_DEPTH = 10;
  const CHECKSUM_DEPTH = 10;
  const HISTORY_POINT_MS = 60_000;
  const HISTORY_KEPT = 24 * 60;
  const HEARTBEAT_S = 5;
  const WATCHDOG_MS = 15_000;          // nothing received for this long: the link is dead
  const CONNECT_TIMEOUT_MS = 10_000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 5_000;
  const MAX_RATE_RETRIES = 8;
  const RESYNC_MIN_INTERVAL_MS = 500;
  const RETRY_MIN_MS = 1_000;          // a refused subscribe is tried again, backing off
  const RETRY_MAX_MS = 30_000;
  const INSTRUMENTS_REFRESH_MS = 10_000;   // statuses change (halts, expiry), months are listed
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const QTY_FORMAT = new Intl.NumberFormat("en-US");

  // -- Small helpers ------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const noop = () => {};
  const isNum = (x) => typeof x === "number" && Number.isFinite(x);

  /** A wire price ("2.145") as an integer number of thousandths, or null. */
  function ticks(price) {
    if (price === null || price === undefined || price === "") return null;
    const n = Number(price);
    return Number.isFinite(n) ? Math.round(n * 1000) : null;
  }

  function num(price) {
    const t = ticks(price);
    return t === null ? null : t / 1000;
  }

  const fmtPrice = (p) => (p === null || p === undefined || p === "" ? DASH : String(p));
  const fmtQty = (q) => (isNum(q) ? QTY_FORMAT.format(q) : DASH);
  const pad2 = (n) => String(n).padStart(2, "0");

  function fmtTime(ms) {
    if (!isNum(ms)) return DASH;
    const d = new Date(ms);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  function fmtHM(ms) {
    const d = new Date(ms);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  }

  /** "2027-03-01" -> "Mar 27". */
  function monthLabel(date) {
    const m = /^(\d{4})-(\d{2})/.exec(date || "");
    if (!m) return date || DASH;
    return `${MONTHS[Number(m[2]) - 1] || m[2]} ${m[1].slice(2)}`;
  }

  function monthLong(date) {
    const m = /^(\d{4})-(\d{2})/.exec(date || "");
    return m ? `${MONTHS[Number(m[2]) - 1] || m[2]} ${m[1]}` : DASH;
  }

  function setText(el, text) {
    if (el && el.textContent !== text) el.textContent = text;
  }

  function setAttr(el, name, value) {
    if (value === null || value === undefined) {
      if (el.hasAttribute(name)) el.removeAttribute(name);
    } else if (el.getAttribute(name) !== String(value)) {
      el.setAttribute(name, String(value));
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) {
      if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // -- CRC32 (zlib.crc32) -------------------------------------------------------------

  const CRC_TABLE = (() => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return table;
  })();
  const UTF8 = new TextEncoder();

  function crc32(text) {
    let c = 0xFFFFFFFF;
    for (const byte of UTF8.encode(text)) c = CRC_TABLE[(c ^ byte) & 0xFF] ^ (c >>> 8);
    return (c ^ 0xFFFFFFFF) >>> 0;
  }

  // -- Nice axis ticks ----------------------------------------------------------------

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const mag = 10 ** Math.floor(Math.log10(raw));
    const f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  }

  /** Round the domain [lo, hi] out to nice ticks: {lo, hi, ticks, decimals}. */
  function niceScale(lo, hi, count) {
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

  // -- State --------------------------------------------------------------------------

  const state = {
    instruments: [],            // as market.instruments, in listing order
    bySymbol: new Map(),        // symbol -> instrument
    classes: [],                // GPU classes in listing order
    months: new Map(),          // class -> its instruments in delivery order
    cls: null,                  // selected GPU class
    symbol: null,               // selected contract
    wantedHash: null,           // a hash to apply once instruments are known
    curve: new Map(),           // class -> curve rows (the curve channel)
    tickers: new Map(),         // symbol -> ticker (the ticker channels of the class)
    index: null,                // {gpu_class, value, time, source, fixings}
    history: [],                // [[time ms, value number]] oldest first, one a minute
    book: null,                 // Book of the selected symbol
    trades: null,               // {symbol, list newest first, ids, fresh}
  };

  const dirty = new Set();
  let frame = 0;

  function markDirty(...parts) {
    for (const p of parts) dirty.add(p);
    if (!frame) frame = requestAnimationFrame(render);
  }

  // -- Local order book ---------------------------------------------------------------

  class Book {
    constructor(symbol) {
      this.symbol = symbol;
      this.seq = null;
      this.bids = [];             // [[price, qty, orders]] best (highest) first
      this.asks = [];             // best (lowest) first
      this.verified = null;       // did the last checksum match
      this.awaitingSnapshot = true;
      this.problem = null;        // "gap" | "checksum" while resyncing
      this.resyncing = false;
      this.lastResync = 0;
    }

    snapshot(data) {
      this.bids = levels(data.bids).sort((a, b) => ticks(b[0]) - ticks(a[0]));
      this.asks = levels(data.asks).sort((a, b) => ticks(a[0]) - ticks(b[0]));
      this.awaitingSnapshot = false;
      this.problem = null;
    }

    delta(data) {
      for (const level of levels(data.bids, true)) update(this.bids, level, true);
      for (const level of levels(data.asks, true)) update(this.asks, level, false);
    }

    checksumText() {
      const side = (list) => list.slice(0, CHECKSUM_DEPTH).map((l) => `${l[0]}:${l[1]}`).join("|");
      return `${side(this.bids)}#${side(this.asks)}`;
    }
  }

  function levels(list, keepZero = false) {
    if (!Array.isArray(list)) return [];
    return list.filter((l) => Array.isArray(l) && l.length >= 2 && ticks(l[0]) !== null
                         && (keepZero || l[1] > 0))
               .map((l) => [String(l[0]), Number(l[1]) || 0, isNum(l[2]) ? l[2] : null]);
  }

  /** Insert, replace or (qty 0) remove one level of a side sorted best first. */
  function update(side, level, descending) {
    const key = ticks(level[0]);
    let lo = 0;
    let hi = side.length;
    while (lo < hi) {                 // first index whose price is not better than key
      const mid = (lo + hi) >> 1;
      const t = ticks(side[mid][0]);
      if (descending ? t > key : t < key) lo = mid + 1; else hi = mid;
    }
    const found = lo < side.length && ticks(side[lo][0]) === key;
    if (level[1] <= 0) {
      if (found) side.splice(lo, 1);
    } else if (found) {
      side[lo] = level;
    } else {
      side.splice(lo, 0, level);
    }
  }

  // -- Connection ---------------------------------------------------------------------

  class RpcError extends Error {
    constructor(message, reason, data) {
      super(message);
      this.reason = reason || null;
      this.data = data || {};
    }
  }

  const conn = {
    ws: null,
    gen: 0,                     // bumped on every new socket; stale async work checks it
    state: "connecting",        // connecting | live | disconnected
    ready: false,               // instruments known on this socket: requests may go out
    attempt: 0,
    reconnectAt: 0,
    reconnectTimer: 0,
    openedAt: 0,
    lastRx: 0,
    nextId: 0,
    pending: new Map(),         // id -> {resolve, reject}
    subs: new Set(),            // channels subscribed (or being subscribed) on this socket
    reason: "",
  };

  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}/ws`;
  }

  function connect() {
    clearTimeout(conn.reconnectTimer);
    conn.reconnectTimer = 0;
    conn.gen += 1;
    const gen = conn.gen;
    setConnState("connecting");
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (err) {
      conn.reason = "cannot open the websocket";
      scheduleReconnect();
      return;
    }
    conn.ws = ws;
    conn.openedAt = Date.now();
    conn.lastRx = Date.now();
    ws.onopen = () => { if (gen === conn.gen) onOpen(gen); };
    ws.onmessage = (ev) => { if (gen === conn.gen) onMessage(ev.data); };
    ws.onclose = () => { if (gen === conn.gen) onClosed("connection closed"); };
    ws.onerror = noop;      // a close event always follows
  }

  async function onOpen(gen) {
    conn.lastRx = Date.now();
    call("session.heartbeat", { interval: HEARTBEAT_S }).catch(noop);
    let instruments;
    try {
      instruments = await call("market.instruments");
    } catch (err) {
      if (gen === conn.gen) dropConnection("instruments unavailable");
      return;
    }
    if (gen !== conn.gen) return;
    setInstruments(instruments);
    conn.ready = true;
    conn.attempt = 0;
    setConnState("live");
    if (state.book) {                   // a fresh snapshot will come with the subscription
      state.book.awaitingSnapshot = true;
      state.book.resyncing = false;
    }
    applyHash(state.wantedHash ?? location.hash, false);
    syncSubscriptions();
  }

  /** Close a socket that is still open but no longer trusted, and go reconnect. */
  function dropConnection(reason) {
    const ws = conn.ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (err) { /* already closed */ }
    }
    onClosed(reason);
  }

  function onClosed(reason) {
    conn.gen += 1;              // late events of the old socket are ignored from now on
    conn.ws = null;
    conn.ready = false;
    conn.reason = reason;
    conn.subs.clear();
    const pending = [...conn.pending.values()];
    conn.pending.clear();
    for (const p of pending) p.reject(new RpcError("connection lost", "connection_lost"));
    if (state.book) state.book.awaitingSnapshot = true;
    scheduleReconnect();
  }

  function scheduleReconnect() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** conn.attempt);
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    conn.attempt = Math.min(conn.attempt + 1, 10);
    conn.reconnectAt = Date.now() + delay;
    clearTimeout(conn.reconnectTimer);
    conn.reconnectTimer = setTimeout(connect, delay);
    setConnState("disconnected");
  }

  function setConnState(s) {
    conn.state = s;
    markDirty("status", "ladder");
  }

  // Watchdog: the heartbeat keeps data flowing at least every 5 s, so silence
  // for 15 s means a half-open connection. Also refreshes the countdown label.
  setInterval(() => {
    const now = Date.now();
    const ws = conn.ws;
    if (ws && ws.readyState === WebSocket.CONNECTING && now - conn.openedAt > CONNECT_TIMEOUT_MS) {
      dropConnection("connect timed out");
    } else if (ws && ws.readyState === WebSocket.OPEN && now - conn.lastRx > WATCHDOG_MS) {
      dropConnection("no data for 15 s");
    }
    if (conn.state === "disconnected") markDirty("status");
  }, 1000);

  // Follow the listing: a halt, a resumption, an expiry, a new month.
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
    syncSubscriptions();
  }, INSTRUMENTS_REFRESH_MS);

  window.addEventListener("online", () => {
    if (conn.state === "disconnected") connect();
  });

  /** Send a request; resolves with its result. Retries rate_limited after retry_after_ms. */
  async function call(method, params = {}) {
    for (let attempt = 0; ; attempt++) {
      const gen = conn.gen;
      try {
        return await send(method, params);
      } catch (err) {
        if (err.reason !== "rate_limited" || attempt >= MAX_RATE_RETRIES || gen !== conn.gen) {
          throw err;
        }
        const wait = Number(err.data.retry_after_ms);
        await sleep((isNum(wait) && wait > 0 ? wait : 250) + Math.random() * 50);
        if (gen !== conn.gen) throw new RpcError("connection lost", "connection_lost");
      }
    }
  }

  function send(method, params) {
    return new Promise((resolve, reject) => {
      const ws = conn.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        reject(new RpcError("not connected", "connection_lost"));
        return;
      }
      const id = ++conn.nextId;
      conn.pending.set(id, { resolve, reject });
      try {
        ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
      } catch (err) {
        conn.pending.delete(id);
        reject(new RpcError("send failed", "connection_lost"));
      }
    });
  }

  function onMessage(raw) {
    conn.lastRx = Date.now();
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch (err) {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    if (msg.id !== undefined && msg.id !== null && !msg.method) {
      const p = conn.pending.get(msg.id);
      if (!p) return;
      conn.pending.delete(msg.id);
      if (msg.error) {
        const e = msg.error;
        const data = (e && typeof e.data === "object" && e.data) || {};
        p.reject(new RpcError(String(e.message || "error"), data.reason || String(e.code), data));
      } else {
        p.resolve(msg.result);
      }
      return;
    }
    if (msg.method === "heartbeat") {
      call("session.test").catch(noop);
    } else if (msg.method === "subscription" && msg.params) {
      onNotification(String(msg.params.channel || ""), msg.params.data);
    }
  }

  // -- Subscriptions ------------------------------------------------------------------

  function wantedChannels() {
    const out = new Set();
    if (state.cls) {
      out.add(`curve.${state.cls}`);
      out.add(`index.${state.cls}`);
      for (const inst of state.months.get(state.cls) || []) out.add(`ticker.${inst.symbol}`);
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
  const refresh = new Set();          // channels whose local state needs seeding again

  /** A subscribe that failed is not given up: try the whole sync again later. */
  function retrySyncLater() {
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** syncRetries);
    syncRetries = Math.min(syncRetries + 1, 10);
    clearTimeout(syncRetryTimer);
    syncRetryTimer = setTimeout(syncSubscriptions, delay * (0.5 + Math.random() / 2));
  }

  /** Bring the socket's subscriptions to what the selection wants, in one call each way. */
  async function syncSubscriptions() {
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
        const add = [...want].filter((c) => !conn.subs.has(c) || refresh.has(c));
        refresh.clear();
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
    if (kind === "trades") fetchTrades(name, gen);
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

  async function fetchIndex(cls, gen) {
    let view;
    try {
      view = await call("market.index", { gpu_class: cls, history: true });
    } catch (err) {
      return;
    }
    if (gen !== conn.gen || state.cls !== cls || !view) return;
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

  // -- Notifications ------------------------------------------------------------------

  function onNotification(channel, data) {
    if (!conn.subs.has(channel)) return;          // an unsubscribed channel's late message
    const [kind, name] = splitChannel(channel);
    switch (kind) {
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
        if (state.trades && state.trades.symbol === name && Array.isArray(data)) addTrades(data, true);
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

  function setIndex(data) {
    state.index = {
      gpu_class: data.gpu_class,
      value: data.value ?? null,
      time: isNum(data.time) ? data.time : null,
      source: data.source ?? null,
      fixings: Array.isArray(data.fixings) ? data.fixings : [],
    };
  }

  /** One point a minute, the last value of the minute, as the server keeps it. */
  function addIndexPoint(time, value) {
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

  function compareTrades(a, b) {
    if (a.time !== b.time) return (b.time || 0) - (a.time || 0);
    if (isNum(a.trade_id) && isNum(b.trade_id)) return b.trade_id - a.trade_id;
    return String(b.trade_id).localeCompare(String(a.trade_id));
  }

  function addTrades(list, live) {
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

  // -- Instruments and selection ------------------------------------------------------

  function setInstruments(list) {
    const instruments = Array.isArray(list) ? list.filter((i) => i && i.symbol && i.gpu_class) : [];
    state.instruments = instruments;
    state.bySymbol = new Map(instruments.map((i) => [i.symbol, i]));
    const months = new Map();
    for (const inst of instruments) {
      if (!months.has(inst.gpu_class)) months.set(inst.gpu_class, []);
      months.get(inst.gpu_class).push(inst);
    }
    for (const list_ of months.values()) {
      list_.sort((a, b) => String(a.delivery_start).localeCompare(String(b.delivery_start))
                           || a.symbol.localeCompare(b.symbol));
    }
    state.months = months;
    state.classes = [...months.keys()];
    markDirty("tabs", "table", "curve", "ladder", "stats");
  }

  function frontMonth(cls) {
    const months = state.months.get(cls) || [];
    return (months.find((i) => i.status === "open")
            || months.find((i) => i.status === "pre_open" || i.status === "halted")
            || months[0] || null);
  }

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

  function applyHash(hash, fromUser) {
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
        refresh.add(`curve.${cls}`);
        refresh.add(`index.${cls}`);
        for (const inst of state.months.get(cls) || []) refresh.add(`ticker.${inst.symbol}`);
      }
      markDirty("tabs", "table", "curve", "index");
    }
    if (symbol !== state.symbol) {
      state.symbol = symbol;
      state.book = symbol ? new Book(symbol) : null;
      state.trades = symbol ? { symbol, list: [], ids: new Set(), fresh: new Set(), loaded: false } : null;
      if (symbol) {
        refresh.add(`book.${symbol}`);
        refresh.add(`trades.${symbol}`);
      }
      markDirty("ladder", "trades", "table", "curve", "stats");
    }
    if (writeHash && symbol && location.hash !== `#${symbol}`) {
      history.replaceState(null, "", `#${symbol}`);
    }
    syncSubscriptions();
  }

  function selectSymbol(symbol) {
    const inst = state.bySymbol.get(symbol);
    if (inst) select(inst.gpu_class, inst.symbol);
  }

  function selectClass(cls) {
    if (cls === state.cls) return;
    const front = frontMonth(cls);
    select(cls, front ? front.symbol : null);
  }

  window.addEventListener("hashchange", () => applyHash(location.hash, true));

  // -- Rendering ----------------------------------------------------------------------

  function render() {
    frame = 0;
    const parts = new Set(dirty);
    dirty.clear();
    const jobs = [
      ["status", renderStatus], ["tabs", renderTabs], ["curve", renderCurve],
      ["table", renderTable], ["ladder", renderLadder], ["stats", renderStats],
      ["trades", renderTrades], ["index", renderIndex],
    ];
    for (const [name, fn] of jobs) {
      if (!parts.has(name)) continue;
      try {
        fn();
      } catch (err) {
        // A rendering fault must not stop the feed; show it and carry on.
        notice(`display error (${name}): ${err && err.message}`);
      }
    }
  }

  let noticeTimer = 0;
  function notice(text) {
    const n = $("notice");
    setText(n, text);
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => setText(n, ""), 8000);
  }

  function renderStatus() {
    const s = $("status");
    setAttr(s, "data-state", conn.state);
    let label;
    if (conn.state === "live") {
      label = "live";
    } else if (conn.state === "connecting") {
      label = "connecting…";
    } else {
      const secs = Math.max(0, Math.ceil((conn.reconnectAt - Date.now()) / 1000));
      label = secs > 0 ? `disconnected — reconnecting in ${secs} s` : "disconnected — reconnecting…";
    }
    setText($("status-label"), label);
    if (conn.state === "disconnected" && conn.reason) setAttr(s, "title", conn.reason);
    else setAttr(s, "title", null);
    document.body.classList.toggle("stale", conn.state !== "live");
  }

  function renderTabs() {
    const box = $("classes");
    const have = [...box.children].map((b) => b.dataset.class).join(",");
    if (have !== state.classes.join(",")) {
      box.replaceChildren(...state.classes.map((cls) => {
        const b = el("button", { type: "button", role: "tab", class: "tab", "data-class": cls, text: cls });
        b.addEventListener("click", () => selectClass(cls));
        b.addEventListener("keydown", onTabKey);
        return b;
      }));
    }
    for (const b of box.children) {
      const on = b.dataset.class === state.cls;
      setAttr(b, "aria-selected", on ? "true" : "false");
      setAttr(b, "tabindex", on ? "0" : "-1");
    }
    for (const node of document.querySelectorAll(".js-class")) setText(node, state.cls || DASH);
  }

  function onTabKey(ev) {
    if (ev.key !== "ArrowLeft" && ev.key !== "ArrowRight") return;
    const i = state.classes.indexOf(state.cls);
    const n = state.classes.length;
    if (!n) return;
    const next = state.classes[(i + (ev.key === "ArrowRight" ? 1 : n - 1)) % n];
    selectClass(next);
    const btn = $("classes").querySelector(`[data-class="${CSS.escape(next)}"]`);
    if (btn) btn.focus();
    ev.preventDefault();
  }

  /** One month of the selected class: instrument, curve row and ticker, merged. */
  function monthRows() {
    const months = state.months.get(state.cls) || [];
    const curve = new Map((state.curve.get(state.cls) || []).map((r) => [r && r.symbol, r]));
    return months.map((inst) => {
      const c = curve.get(inst.symbol) || {};
      const t = state.tickers.get(inst.symbol) || {};
      return {
        inst,
        symbol: inst.symbol,
        label: monthLabel(inst.delivery_start),
        bid: c.best_bid ?? null,
        ask: c.best_ask ?? null,
        last: c.last_price ?? null,
        mark: c.mark_price ?? null,
        ticker: t,
      };
    });
  }

  // The curve table: rows are built when the class changes, then updated in place.
  let tableKey = "";
  const tableRows = new Map();

  function renderTable() {
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

  function flash(node, kind) {
    node.classList.remove("flash-up", "flash-down");
    void node.offsetWidth;            // restart the animation
    node.classList.add(`flash-${kind}`);
  }

  document.addEventListener("animationend", (ev) => {
    const t = ev.target;
    if (t && t.classList) t.classList.remove("flash-up", "flash-down", "flash-new");
  });

  // -- The forward curve chart --------------------------------------------------------

  let curveLayout = "";
  let curveHits = new Map();          // symbol -> {rect, title}

  function renderCurve() {
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

  // -- The ladder ---------------------------------------------------------------------

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

  function renderLadder() {
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
      `delivery ${monthLong(inst.delivery_start)}`,
      isNum(inst.contract_hours) ? `${QTY_FORMAT.format(inst.contract_hours)} GPU-h a contract` : null,
      inst.band_low && inst.band_high ? `band ${inst.band_low}–${inst.band_high}` : null,
      inst.status ? inst.status.replace("_", " ") : null,
    ].filter(Boolean);
    setText(info, parts.join(" · "));
  }

  function renderStats() {
    const t = (state.symbol && state.tickers.get(state.symbol)) || {};
    const row = monthRows().find((r) => r.symbol === state.symbol) || {};
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

  // -- Trades -------------------------------------------------------------------------

  const tradeRows = new Map();        // trade_id -> tr
  let tradesSymbol = null;

  function renderTrades() {
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

  // -- The index ----------------------------------------------------------------------

  function renderIndex() {
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

  // -- Start --------------------------------------------------------------------------

  if (typeof ResizeObserver === "function") {
    let lastSizes = "";
    const ro = new ResizeObserver(() => {
      const sizes = ["curve-chart", "index-chart"].map((id) => {
        const node = $(id);
        return `${node.clientWidth}x${node.clientHeight}`;
      }).join("|");
      if (sizes !== lastSizes) {
        lastSizes = sizes;
        markDirty("curve", "index");
      }
    });
    ro.observe($("curve-chart"));
    ro.observe($("index-chart"));
  }

  state.wantedHash = location.hash;
  markDirty("status", "tabs", "curve", "table", "ladder", "stats", "trades", "index");
  connect();
})();
