/*
 * book.js: the local order book of the selected contract and its checksum.
 *
 * A Book is built from a book.{symbol} snapshot and kept by its deltas; the
 * server's checksum is the CRC32 (zlib.crc32) of the top levels' text, which
 * checksumText() and crc32() reproduce. Whether a delta follows on (its seq)
 * and what to do on a gap or a mismatch is the subscriptions' business.
 */

import { isNum, ticks } from "./format.js";

const CHECKSUM_DEPTH = 10;

export class Book {
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

// -- CRC32 (zlib.crc32) ---------------------------------------------------------------

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

export function crc32(text) {
  let c = 0xFFFFFFFF;
  for (const byte of UTF8.encode(text)) c = CRC_TABLE[(c ^ byte) & 0xFF] ^ (c >>> 8);
  return (c ^ 0xFFFFFFFF) >>> 0;
}
