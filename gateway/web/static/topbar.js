/*
 * topbar.js: the top bar's status of the link and its tabs of GPU classes.
 *
 * The status says live, connecting or disconnected (with the countdown to the
 * next attempt) and dims the page while not live. The tabs are rebuilt only
 * when the classes listed change; arrow keys move between them.
 */

import { $, el, setAttr, setText } from "./dom.js";
import { DASH } from "./format.js";
import { conn } from "./link.js";
import { selectClass } from "./selection.js";
import { state } from "./state.js";

export function renderStatus() {
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

export function renderTabs() {
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
