/*
 * link.js: the page's websocket to the server, JSON-RPC over it, and keeping it up.
 *
 * One socket at a time, anonymous (no login). On open it asks for heartbeats
 * and fetches the listing; once it has the listing the link is ready and
 * requests may go out. It answers the server's heartbeats, retries a
 * rate_limited request, drops a socket that went silent, and reconnects with
 * backoff and jitter. What the listing and the notifications mean is not its
 * business: startLink() is given handlers for them. `conn` is shared
 * read-only: its state for the status line, `gen` and `ready` and `subs` for
 * the subscriptions.
 */

import { isNum } from "./format.js";
import { markDirty } from "./state.js";

const HEARTBEAT_S = 5;
const WATCHDOG_MS = 15_000;          // nothing received for this long: the link is dead
const CONNECT_TIMEOUT_MS = 10_000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5_000;
const MAX_RATE_RETRIES = 8;

const noop = () => {};
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class RpcError extends Error {
  constructor(message, reason, data) {
    super(message);
    this.reason = reason || null;
    this.data = data || {};
  }
}

export const conn = {
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

// What the page does with the link (startLink): the listing on each new socket, the
// socket going live, each notification, the socket lost.
let handlers = { listed: noop, live: noop, notification: noop, lost: noop };

/** Set the handlers; watch the link; reconnect at once when the browser is back online. */
export function startLink(given) {
  handlers = { ...handlers, ...given };
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

  window.addEventListener("online", () => {
    if (conn.state === "disconnected") connect();
  });
}

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export function connect() {
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
  handlers.listed(instruments);
  conn.ready = true;
  conn.attempt = 0;
  setConnState("live");
  handlers.live();
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
  handlers.lost();
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

/** Send a request; resolves with its result. Retries rate_limited after retry_after_ms. */
export async function call(method, params = {}) {
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
    handlers.notification(String(msg.params.channel || ""), msg.params.data);
  }
}
