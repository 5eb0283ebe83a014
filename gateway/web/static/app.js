/*
 * gpux market page: a read-only view of the exchange over its public websocket.
 *
 * The page is an anonymous client of the wire protocol (PROTOCOL.md): it
 * fetches the instruments, subscribes to the curve, index and tickers of the
 * selected GPU class and to the book and trades of the selected contract, and
 * renders them. It never logs in and never sends an order.
 *
 * This is its entry module (index.html loads it with type="module"): it wires
 * the link to the market state, runs the render pass and starts the page.
 * The rest, plain ES modules served beside it (no build step):
 *   format.js         prices, quantities, times, delivery periods; nice axis ticks
 *   dom.js            building and updating elements; flash; the footer notice
 *   state.js          what the page knows and which parts of it are dirty
 *   book.js           the local order book and its CRC32 checksum
 *   link.js           the websocket: JSON-RPC, heartbeats, watchdog, reconnect
 *   subscriptions.js  the channels the selection needs; what notifications do
 *   selection.js      the chosen class and contract, and the URL hash
 *   topbar.js, curve.js, contract.js, index_panel.js   the parts of the page
 *   planner.js        the hedge planner (analytics.hedge_plan, a read)
 *
 * Data flow: messages update `state` and mark parts of the page dirty; one
 * requestAnimationFrame pass (render below) renders whatever is dirty, so a
 * burst of messages costs one render.
 */

import { renderCandles, renderLadder, renderStats, renderTrades } from "./contract.js";
import { renderCurve, renderTable } from "./curve.js";
import { $, notice, unflash } from "./dom.js";
import { renderIndex } from "./index_panel.js";
import { connect, startLink } from "./link.js";
import { startPlanner } from "./planner.js";
import { applyHash, keepSelection } from "./selection.js";
import { drawWith, markDirty, setInstruments, state } from "./state.js";
import { followListing, onNotification, syncSubscriptions } from "./subscriptions.js";
import { renderStatus, renderTabs } from "./topbar.js";

function render(parts) {
  const jobs = [
    ["status", renderStatus], ["tabs", renderTabs], ["curve", renderCurve],
    ["table", renderTable], ["ladder", renderLadder], ["stats", renderStats],
    ["trades", renderTrades], ["candles", renderCandles], ["index", renderIndex],
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

// -- Start ----------------------------------------------------------------------------

drawWith(render);

startLink({
  listed: setInstruments,
  live() {
    if (state.book) {                   // a fresh snapshot will come with the subscription
      state.book.awaitingSnapshot = true;
      state.book.resyncing = false;
    }
    applyHash(state.wantedHash ?? location.hash, false);
    syncSubscriptions();
  },
  notification: onNotification,
  lost() {
    if (state.book) state.book.awaitingSnapshot = true;
  },
});
followListing(keepSelection);
startPlanner();

window.addEventListener("hashchange", () => applyHash(location.hash, true));
document.addEventListener("animationend", unflash);

if (typeof ResizeObserver === "function") {
  let lastSizes = "";
  const ro = new ResizeObserver(() => {
    const sizes = ["curve-chart", "index-chart", "price-chart"].map((id) => {
      const node = $(id);
      return `${node.clientWidth}x${node.clientHeight}`;
    }).join("|");
    if (sizes !== lastSizes) {
      lastSizes = sizes;
      markDirty("curve", "index", "candles");
    }
  });
  ro.observe($("curve-chart"));
  ro.observe($("index-chart"));
  ro.observe($("price-chart"));
}

state.wantedHash = location.hash;
markDirty("status", "tabs", "curve", "table", "ladder", "stats", "trades", "candles", "index");
connect();
