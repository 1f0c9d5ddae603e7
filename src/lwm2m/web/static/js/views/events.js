// The live event log.

import { h, perFrame, timeOfDay, view } from "../dom.js";
import { state } from "../state.js";
import { formatValue, leaves } from "../values.js";


function describeEvent(kind, data) {
  switch (kind) {
    case "REGISTRATION":
      return `${data.endpoint} registered from ${data.address}`;
    case "UPDATED":
      return `${data.registration.endpoint} updated`;
    case "DEREGISTRATION":
      return `${data.endpoint} ${data.expired ? "expired" : "deregistered"}`;
    case "NOTIFICATION":
      return `${data.ep} ${data.res || (data.paths || []).join(",")} = ${summarize(data.val)}`;
    case "SEND":
      return `${data.ep} sent ${Object.keys(data.val || {}).join(", ")}`;
    case "SLEEPING":
    case "AWAKE":
      return `${data.ep} ${kind.toLowerCase()}`;
    default:
      if (kind.startsWith("BOOTSTRAP_")) {
        const extra = data.operation ? ` ${data.operation} ${data.path || ""} ${data.code || ""}` : data.message ? ` ${data.message}` : "";
        return `${data.ep} bootstrap ${kind.slice(10).toLowerCase()}${extra}`;
      }
      return JSON.stringify(data).slice(0, 120);
  }
}

function summarize(node) {
  if (!node) return "";
  if (node.kind === "composite" || !node.kind) {
    return Object.entries(node)
      .map(([p, n]) => `${p}=${summarize(n)}`)
      .join(", ");
  }
  const all = leaves(node);
  const entries = Object.entries(all);
  if (entries.length === 1) return formatValue(entries[0][1]);
  return `{${entries.length} values}`;
}

export function renderEventsView() {
  const kinds = ["REGISTRATION", "UPDATED", "DEREGISTRATION", "NOTIFICATION", "SEND", "SLEEPING", "AWAKE", "BOOTSTRAP"];
  const enabled = new Set(kinds);
  let paused = false;
  const list = h("ol", { class: "event-log" });
  const filter = h("input", { type: "search", class: "search", placeholder: "Filter by endpoint or text…", "aria-label": "Filter events" });
  const chips = kinds.map((k) =>
    h(
      "button",
      {
        type: "button",
        class: `chip on ev-${k.toLowerCase()}`,
        "aria-pressed": "true",
        onclick: (ev) => {
          if (enabled.has(k)) enabled.delete(k);
          else enabled.add(k);
          ev.currentTarget.classList.toggle("on");
          ev.currentTarget.setAttribute("aria-pressed", String(enabled.has(k)));
          draw();
        },
      },
      k.toLowerCase(),
    ),
  );
  const pause = h("button", { type: "button", class: "btn ghost", onclick: () => ((paused = !paused), (pause.textContent = paused ? "Resume" : "Pause"), draw()) }, "Pause");
  const clear = h("button", { type: "button", class: "btn ghost", onclick: () => ((state.events = []), draw()) }, "Clear");

  function line(e) {
    const group = e.kind.startsWith("BOOTSTRAP_") ? "bootstrap" : e.kind.toLowerCase();
    const details = h("pre", { class: "event-json" }, JSON.stringify(e.data, null, 2));
    return h(
      "li",
      { class: `ev ev-${group}` },
      h("details", {}, h("summary", {}, h("time", {}, timeOfDay(e.at)), h("span", { class: "ev-kind" }, e.kind), h("span", { class: "ev-text" }, describeEvent(e.kind, e.data))), details),
    );
  }

  function draw() {
    if (paused) return;
    const q = filter.value.trim().toLowerCase();
    const shown = state.events
      .filter((e) => enabled.has(e.kind.startsWith("BOOTSTRAP_") ? "BOOTSTRAP" : e.kind))
      .filter((e) => !q || JSON.stringify(e.data).toLowerCase().includes(q) || e.kind.toLowerCase().includes(q))
      .slice(-300)
      .reverse();
    list.replaceChildren(...shown.map(line));
    if (!shown.length) list.appendChild(h("li", { class: "empty-line muted" }, "No events yet. They appear live as devices register, update and notify."));
  }
  filter.addEventListener("input", draw);
  view.replaceChildren(
    h(
      "section",
      { class: "page" },
      h("div", { class: "page-head" }, h("h1", {}, "Live events"), h("div", { class: "row" }, pause, clear)),
      h("div", { class: "toolbar wrap" }, filter, h("div", { class: "chips" }, ...chips)),
      h("div", { class: "card flush" }, list),
    ),
  );
  state.onChange = perFrame(draw);
  draw();
  return () => {};
}
