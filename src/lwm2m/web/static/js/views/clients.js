// The client list at fleet scale: one page at a time from the server
// (GET /api/clients?limit=&offset=&q=...), searched on the server as the user
// types, with the fleet overview (GET /api/stats) above it. Live events
// update the rows on screen only; a registration off screen does not add a
// row, it only refreshes the counts. For the names typed in the search, it
// also shows why the server recently refused them (GET /api/refusals).

import { api } from "../api.js";
import { Series, renderChart } from "../chart.js";
import { ago, errorText, h, perFrame, toast, view } from "../dom.js";
import { state } from "../state.js";
import { clusterPanel } from "./cluster.js";

const PAGE_SIZE = 100;
const SEARCH_DELAY_MS = 150;
const STATS_EVERY_MS = 2000;

// "no registration; refused 3 times, last: 4.09 name held by another client at … from …"
export function refusalText(entry) {
  const last = entry.last;
  const times = entry.count === 1 ? "once" : `${entry.count} times`;
  const code = last.code ? `${last.code} ` : "";
  const when = new Date(last.time).toLocaleString();
  const status = entry.registered ? "registered now" : "no registration";
  return `${status}; refused ${times}, last: ${code}${last.summary} at ${when} from ${last.address}`;
}

// A refusal that names no endpoint: a failed handshake, a request without ep.
function unnamedTitle(r) {
  if (r.kind === "dtls_handshake") return `DTLS handshake from ${r.address} failed: ${r.summary}`;
  const what = r.kind === "bootstrap" ? "Request Bootstrap" : "Register";
  return `${what} without endpoint name from ${r.address} refused: ${r.code || ""} ${r.summary}`;
}

function refusalDetail(r) {
  const who = r.identity ? ` (${r.identity})` : "";
  return `${r.message}${who}`;
}

function renderRefusals(box, query, data) {
  const items = [
    ...data.endpoints.map((e) =>
      h(
        "li",
        { class: "refusal", dataset: { endpoint: e.endpoint }, title: e.recent.map((r) => `${new Date(r.time).toLocaleString()}: ${r.code || ""} ${r.message}`).join("\n") },
        h("span", { class: "endpoint mono" }, e.endpoint),
        " ",
        h("span", { class: "refusal-text" }, refusalText(e)),
        h("div", { class: "muted small" }, refusalDetail(e.last)),
      ),
    ),
    ...data.unnamed.slice(0, 5).map((r) =>
      h(
        "li",
        { class: "refusal unnamed", dataset: { address: r.address } },
        h("span", { class: "refusal-text" }, `${unnamedTitle(r)} at ${new Date(r.time).toLocaleString()}`),
        h("div", { class: "muted small" }, `${r.message} [${r.service}]`),
      ),
    ),
  ];
  box.hidden = items.length === 0;
  box.replaceChildren(
    h("h2", { class: "card-title" }, `Recent refusals matching “${query}”`),
    h("ul", { class: "refusals" }, ...items),
  );
}


export function statusBadge(c) {
  if (c.sleeping) return h("span", { class: "badge sleeping", title: "queue mode, asleep" }, "sleeping");
  return h("span", { class: "badge online" }, "online");
}

function clientRow(c) {
  return h(
    "tr",
    { class: "row-link", dataset: { endpoint: c.endpoint }, onclick: () => (location.hash = `#/clients/${encodeURIComponent(c.endpoint)}`) },
    h("td", {}, statusBadge(c)),
    h("td", {}, h("a", { href: `#/clients/${encodeURIComponent(c.endpoint)}`, class: "endpoint" }, c.endpoint), c.secure ? h("span", { class: "lock", title: c.transport === "coaps+tcp" ? "TLS" : "DTLS" }, " 🔒") : null),
    h("td", { class: "mono", title: c.transport }, c.address, h("span", { class: "tag transport" }, (c.transport || "coap").includes("+tcp") ? "TCP" : "UDP")),
    h("td", {}, c.lwM2mVersion),
    h("td", { class: "mono" }, c.bindingMode, c.queuemode ? h("span", { class: "tag" }, "Q") : null),
    h("td", {}, `${c.lifetime}s`),
    h("td", { title: c.registrationDate }, ago(c.registrationDate)),
    h("td", { title: c.lastUpdate }, ago(c.lastUpdate)),
    h("td", {}, String(new Set(c.objectLinks.map((l) => l.url.split("/")[1])).size)),
  );
}

// The overview: counts by state, binding and version, and registrations per minute.
function renderOverview(box, stats, onPick) {
  const chip = (label, value, pick) =>
    h("button", { class: "stat", type: "button", dataset: { stat: label }, onclick: pick ? () => onPick(pick) : undefined }, h("span", { class: "stat-value" }, String(value)), h("span", { class: "stat-label" }, label));
  const series = new Series(60);
  for (const m of stats.registrationsPerMinute) series.push(m.count, Date.parse(m.minute));
  box.replaceChildren(
    h(
      "div",
      { class: "stats" },
      chip("registered", stats.registrations, {}),
      chip("awake", stats.states.awake, { state: "awake" }),
      chip("sleeping", stats.states.sleeping, { state: "sleeping" }),
      chip("secure", stats.states.secure, { state: "secure" }),
      ...Object.entries(stats.bindings).map(([b, n]) => chip(`binding ${b}`, n, { binding: b })),
      ...Object.entries(stats.lwm2mVersions).map(([v, n]) => chip(`LwM2M ${v}`, n, { lwm2m: v })),
      stats.refusalsTotal === null ? null : chip("refused", stats.refusalsTotal, null),
    ),
    h("div", { class: "stats-chart", title: "Registrations per minute, last hour" }, renderChart(series, { width: 360, height: 80, unit: "registrations/min" })),
  );
}

export function renderClientsView() {
  const saved = JSON.parse(sessionStorage.getItem("lwm2m.clients.view") || "{}");
  const filter = h("input", {
    type: "search",
    placeholder: "Search endpoint or address…",
    class: "search",
    value: saved.filter || "",
    "aria-label": "Filter clients",
  });
  const sort = h(
    "select",
    { class: "select", "aria-label": "Sort clients" },
    h("option", { value: "endpoint" }, "Endpoint"),
    h("option", { value: "-registrationDate" }, "Newest registration"),
    h("option", { value: "-lastUpdate" }, "Latest update"),
    h("option", { value: "address" }, "Address"),
  );
  sort.value = saved.sort || "endpoint";
  const only = h(
    "select",
    { class: "select", "aria-label": "Show only" },
    h("option", { value: "" }, "All"),
    h("option", { value: "awake" }, "Awake"),
    h("option", { value: "sleeping" }, "Sleeping"),
    h("option", { value: "secure" }, "Secure (DTLS)"),
    h("option", { value: "queue" }, "Queue mode"),
  );
  only.value = saved.only || "";
  const binding = h("input", { class: "search short", placeholder: "Binding", "aria-label": "Binding", value: saved.binding || "" });
  const lwm2m = h("input", { class: "search short", placeholder: "LwM2M", "aria-label": "LwM2M version", value: saved.lwm2m || "" });
  const count = h("span", { class: "muted" });
  const overview = h("div", { class: "card overview" });
  const cluster = clusterPanel();
  const body = h("tbody");
  const table = h(
    "table",
    { class: "table clients-table" },
    h(
      "thead",
      {},
      h("tr", {}, ...["Status", "Endpoint", "Address", "LwM2M", "Binding", "Lifetime", "Registered", "Last update", "Objects"].map((t) => h("th", {}, t))),
    ),
    body,
  );
  const empty = h(
    "div",
    { class: "empty" },
    h("div", { class: "empty-title" }, "No clients registered yet"),
    h("p", { class: "muted" }, "Start a device, e.g. ", h("code", {}, "lwm2m client --server coap://127.0.0.1:5683 --endpoint dev-1"), ". It appears here as soon as it registers."),
  );
  const prev = h("button", { class: "btn", type: "button", "aria-label": "Previous page" }, "‹ Prev");
  const next = h("button", { class: "btn", type: "button", "aria-label": "Next page" }, "Next ›");
  const where = h("span", { class: "muted page-where" });
  const pager = h("div", { class: "toolbar pager" }, prev, where, next);

  const refusals = h("div", { class: "card warn refusals-card", hidden: true, "aria-live": "polite" });
  let refusalQuery = null;
  let refusalSeq = 0;
  let refusalTimer = null;

  // Debounced; an answer that arrives after a newer query was sent is dropped.
  function loadRefusals(q, { force = false } = {}) {
    if (q === refusalQuery && !force) return;
    refusalQuery = q;
    clearTimeout(refusalTimer);
    const seq = ++refusalSeq;
    if (!q) {
      refusals.hidden = true;
      return;
    }
    refusalTimer = setTimeout(async () => {
      try {
        const data = await api("GET", "/api/refusals", { query: { search: q, limit: 10 } });
        if (seq === refusalSeq) renderRefusals(refusals, q, data);
      } catch (err) {
        if (seq === refusalSeq) toast(errorText(err), "error");
      }
    }, force ? 0 : 250);
  }

  let offset = saved.offset || 0;
  let page = { total: 0, items: [] }; // what is on screen
  let seq = 0;
  let searchTimer = null;

  function params() {
    const p = { limit: PAGE_SIZE, offset, sort: sort.value, q: filter.value.trim(), binding: binding.value.trim(), lwm2m: lwm2m.value.trim() };
    if (only.value === "awake") p.sleeping = "false";
    if (only.value === "sleeping") p.sleeping = "true";
    if (only.value === "secure") p.secure = "true";
    if (only.value === "queue") p.queuemode = "true";
    return p;
  }

  // Loads the page; an answer overtaken by a newer request is dropped.
  async function load() {
    const mine = ++seq;
    sessionStorage.setItem("lwm2m.clients.view", JSON.stringify({ filter: filter.value, sort: sort.value, only: only.value, binding: binding.value, lwm2m: lwm2m.value, offset }));
    try {
      const answer = await api("GET", "/api/clients", { query: params() });
      if (mine !== seq) return;
      if (answer.items.length === 0 && offset > 0 && answer.total > 0) {
        offset = Math.max(0, Math.floor((answer.total - 1) / PAGE_SIZE) * PAGE_SIZE);
        return load();
      }
      page = answer;
      state.clients = new Map(page.items.map((c) => [c.endpoint, c]));
      rows();
    } catch (err) {
      if (mine === seq) toast(errorText(err), "error");
    }
  }

  // Draws what is on screen (state.clients holds the live copies of those rows).
  function rows() {
    const searching = filter.value.trim() || binding.value.trim() || lwm2m.value.trim() || only.value;
    body.replaceChildren(...page.items.map((c) => clientRow(state.clients.get(c.endpoint) || c)));
    const last = Math.min(offset + page.items.length, page.total);
    count.textContent = searching ? `${page.total} matching clients` : `${page.total} client${page.total === 1 ? "" : "s"}`;
    where.textContent = page.total ? `${offset + 1}–${last} of ${page.total}` : "";
    prev.disabled = offset === 0;
    next.disabled = last >= page.total;
    table.hidden = page.total === 0;
    pager.hidden = page.total <= PAGE_SIZE && offset === 0;
    empty.hidden = page.total !== 0 || searching;
    empty.querySelector(".empty-title").textContent = "No clients registered yet";
    loadRefusals(filter.value.trim());
  }

  // Whether a new registration would sort into the page on screen (then the page reloads).
  function belongsHere(ep) {
    if (page.items.length < PAGE_SIZE) return true; // the last page has room
    if (sort.value === "-registrationDate") return offset === 0; // newest first
    if (sort.value !== "endpoint") return false;
    return page.items[0].endpoint <= ep && ep <= page.items[page.items.length - 1].endpoint;
  }

  let reloadTimer = null;
  function loadSoon() {
    if (reloadTimer === null) reloadTimer = setTimeout(() => ((reloadTimer = null), load()), 100);
  }

  function search() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      offset = 0;
      load();
    }, SEARCH_DELAY_MS);
  }

  let statsTimer = null;
  async function loadStats() {
    try {
      renderOverview(overview, await api("GET", "/api/stats"), pick);
    } catch (err) {
      toast(errorText(err), "error");
    }
  }
  function statsSoon() {
    if (statsTimer === null) statsTimer = setTimeout(() => ((statsTimer = null), loadStats()), STATS_EVERY_MS);
  }
  function pick(choice) {
    only.value = choice.state || "";
    binding.value = choice.binding || "";
    lwm2m.value = choice.lwm2m || "";
    offset = 0;
    load();
  }

  filter.addEventListener("input", search);
  binding.addEventListener("input", search);
  lwm2m.addEventListener("input", search);
  sort.addEventListener("change", () => ((offset = 0), load()));
  only.addEventListener("change", () => ((offset = 0), load()));
  prev.addEventListener("click", () => ((offset = Math.max(0, offset - PAGE_SIZE)), load()));
  next.addEventListener("click", () => ((offset += PAGE_SIZE), load()));

  view.replaceChildren(
    h(
      "section",
      { class: "page" },
      h("div", { class: "page-head" }, h("h1", {}, "Clients"), count),
      overview,
      cluster.element,
      h("div", { class: "toolbar wrap" }, filter, h("label", { class: "inline" }, "Show ", only), binding, lwm2m, h("label", { class: "inline" }, "Sort ", sort)),
      h("div", { class: "card flush" }, table, empty),
      pager,
      refusals,
    ),
  );
  const redraw = perFrame(rows);
  state.onChange = (kind, data, ep) => {
    if (kind === "RELOAD") return load();
    if (kind === "REGISTRATION" || kind === "UPDATED" || kind === "DEREGISTRATION") statsSoon();
    const shown = ep && page.items.some((c) => c.endpoint === ep);
    if ((kind === "REGISTRATION" && !shown && belongsHere(ep)) || (kind === "DEREGISTRATION" && shown)) return loadSoon();
    // Only rows on screen change; a registration elsewhere waits for the next page load.
    if (shown) redraw();
  };
  rows();
  load();
  loadStats();
  const timer = setInterval(() => {
    rows(); // refresh the "x ago" columns
    loadRefusals(filter.value.trim(), { force: true });
  }, 15000);
  return () => {
    cluster.stop();
    clearInterval(timer);
    clearTimeout(refusalTimer);
    clearTimeout(searchTimer);
    clearTimeout(statsTimer);
    clearTimeout(reloadTimer);
  };
}
