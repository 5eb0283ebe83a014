/*
 * dom.js: making and updating the page's elements.
 *
 * HTML and SVG nodes are built with el() and svg(); setText() and setAttr()
 * write only what changed, so rendering the same thing again costs no layout.
 * Also here: the flash of a changed cell and the notice line in the footer,
 * which the renderers and the subscriptions both use.
 */

const SVG_NS = "http://www.w3.org/2000/svg";

export const $ = (id) => document.getElementById(id);

export function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

export function setAttr(el, name, value) {
  if (value === null || value === undefined) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== String(value)) {
    el.setAttribute(name, String(value));
  }
}

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

export function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

export function flash(node, kind) {
  node.classList.remove("flash-up", "flash-down");
  void node.offsetWidth;            // restart the animation
  node.classList.add(`flash-${kind}`);
}

/** The document's animationend listener: a flash, once played, is taken off. */
export function unflash(ev) {
  const t = ev.target;
  if (t && t.classList) t.classList.remove("flash-up", "flash-down", "flash-new");
}

let noticeTimer = 0;

/** Show a line in the footer for a few seconds. */
export function notice(text) {
  const n = $("notice");
  setText(n, text);
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => setText(n, ""), 8000);
}
