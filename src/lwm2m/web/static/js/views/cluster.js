// The cluster panel (GET /api/cluster): the server nodes sharing this store, alive or
// gone, how long ago each one's heartbeat was, and how many registrations it owns.
// Shown only when there is a cluster to show: a shared (Redis) store or more than
// one node; a single SQLite/memory server keeps its page as it was.

import { api } from "../api.js";
import { errorText, h } from "../dom.js";

const REFRESH_MS = 2000;

function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 10) return `${seconds.toFixed(1)} s ago`;
  if (seconds < 120) return `${Math.round(seconds)} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function started(unix) {
  return unix === null || unix === undefined ? "" : new Date(unix * 1000).toLocaleString();
}

function nodeRow(node) {
  const state = node.alive ? "alive" : "gone";
  return h(
    "tr",
    { "data-node": node.id, "data-state": state, class: node.self ? "self" : "" },
    h("td", {}, h("span", { class: `badge ${node.alive ? "online" : "failed"}` }, state)),
    h("td", { class: "mono" }, node.id, node.self ? h("span", { class: "muted small" }, " (this node)") : null),
    h("td", { class: "heartbeat" }, age(node.heartbeatAge)),
    h("td", { class: "owned num" }, node.owned === null ? "–" : String(node.owned)),
    h("td", { class: "mono" }, node.coap || "–"),
    h("td", {}, node.http ? h("a", { href: node.http, target: "_blank", rel: "noopener" }, node.http) : "–"),
    h("td", { class: "muted" }, started(node.started)),
  );
}

// A card that keeps itself up to date; call stop() when the page goes.
export function clusterPanel() {
  const summary = h("span", { class: "muted" });
  const body = h("tbody");
  const error = h("p", { class: "muted", hidden: true });
  const card = h(
    "div",
    { class: "card cluster-card", hidden: true, "aria-label": "Cluster" },
    h("div", { class: "card-head" }, h("h2", {}, "Cluster"), summary),
    h(
      "table",
      { class: "table cluster-table" },
      h("thead", {}, h("tr", {}, ...["State", "Node", "Heartbeat", "Owned", "CoAP", "HTTP", "Started"].map((t) => h("th", {}, t)))),
      body,
    ),
    error,
  );
  let timer = null;
  let stopped = false;

  async function refresh() {
    try {
      const data = await api("GET", "/api/cluster");
      if (stopped) return;
      card.hidden = !(data.shared || data.nodes.length > 1);
      const alive = data.nodes.filter((n) => n.alive).length;
      const gone = data.nodes.length - alive;
      summary.textContent = `${alive} alive` + (gone ? `, ${gone} gone` : "");
      body.replaceChildren(...data.nodes.map(nodeRow));
      error.hidden = true;
    } catch (err) {
      if (stopped) return;
      if (err && err.status === 404) return; // a server without the route: no panel
      error.textContent = errorText(err);
      error.hidden = false;
    }
  }

  function loop() {
    refresh().finally(() => {
      if (!stopped) timer = setTimeout(loop, REFRESH_MS);
    });
  }
  loop();
  return {
    element: card,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
