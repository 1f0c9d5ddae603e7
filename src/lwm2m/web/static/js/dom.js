// DOM helpers shared by the views: element builder, toasts, modal forms, time formatting.

import { ApiError } from "./api.js";


export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const view = document.getElementById("view");
export const dialog = document.getElementById("dialog");

export function toast(message, kind = "info") {
  const box = h("div", { class: `toast ${kind}`, role: "status" }, message);
  document.getElementById("toasts").appendChild(box);
  setTimeout(() => box.classList.add("leaving"), 4200);
  setTimeout(() => box.remove(), 4700);
}

export function errorText(err) {
  if (err instanceof ApiError) {
    const code = err.body && err.body.code ? ` (${err.body.code})` : "";
    return `${err.message}${code}`;
  }
  return err && err.message ? err.message : String(err);
}

export function ago(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "";
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

// Coalesces bursts (thousands of simulated clients updating) into one render per frame.
export function perFrame(fn) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      fn();
    });
  };
}

export function timeOfDay(date = new Date()) {
  return date.toLocaleTimeString([], { hour12: false });
}

// A modal form; resolves with `collect()`'s result, or null when cancelled.
export function modal(title, body, { submit = "OK", collect = () => true, danger = false } = {}) {
  return new Promise((resolve) => {
    const error = h("p", { class: "form-error", role: "alert" });
    const form = h(
      "form",
      { method: "dialog", class: "modal-form" },
      h("h3", {}, title),
      body,
      error,
      h(
        "div",
        { class: "modal-actions" },
        h("button", { type: "button", class: "btn ghost", onclick: () => close(null) }, "Cancel"),
        h("button", { type: "submit", class: danger ? "btn danger" : "btn primary" }, submit),
      ),
    );
    function close(result) {
      dialog.close();
      dialog.replaceChildren();
      resolve(result);
    }
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      try {
        close(collect());
      } catch (err) {
        error.textContent = errorText(err);
      }
    });
    dialog.replaceChildren(form);
    dialog.addEventListener("cancel", () => resolve(null), { once: true });
    dialog.showModal();
    const first = form.querySelector("input:not([readonly]):not([type=checkbox]), select, textarea");
    if (first) first.focus();
  });
}
