// The client list: live status, filter and sort; and, for the names typed in
// the filter, why the server recently refused them (GET /api/refusals).

import { api } from "../api.js";
import { ago, errorText, h, perFrame, toast, view } from "../dom.js";
import { loadClients, state } from "../state.js";

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

export function renderClientsView() {
  const saved = JSON.parse(sessionStorage.getItem("lwm2m.clients.view") || "{}");
  const filter = h("input", {
    type: "search",
    placeholder: "Filter by endpoint, address, version, binding…",
    class: "search",
    value: saved.filter || "",
    "aria-label": "Filter clients",
  });
  const sort = h(
    "select",
    { class: "select", "aria-label": "Sort clients" },
    h("option", { value: "endpoint" }, "Endpoint"),
    h("option", { value: "registrationDate" }, "Newest registration"),
    h("option", { value: "lastUpdate" }, "Latest update"),
    h("option", { value: "address" }, "Address"),
  );
  sort.value = saved.sort || "endpoint";
  const count = h("span", { class: "muted" });
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

  function rows() {
    sessionStorage.setItem("lwm2m.clients.view", JSON.stringify({ filter: filter.value, sort: sort.value }));
    const q = filter.value.trim().toLowerCase();
    let list = [...state.clients.values()];
    if (q) {
      list = list.filter((c) =>
        [c.endpoint, c.address, c.lwM2mVersion, c.bindingMode, c.sleeping ? "sleeping" : "online"].some((f) => String(f).toLowerCase().includes(q)),
      );
    }
    const key = sort.value;
    list.sort((a, b) => {
      if (key === "registrationDate" || key === "lastUpdate") return String(b[key]).localeCompare(String(a[key]));
      return String(a[key]).localeCompare(String(b[key]), undefined, { numeric: true });
    });
    body.replaceChildren(
      ...list.map((c) =>
        h(
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
        ),
      ),
    );
    const total = state.clients.size;
    count.textContent = q ? `${list.length} of ${total} clients` : `${total} client${total === 1 ? "" : "s"}`;
    table.hidden = total === 0;
    empty.hidden = total !== 0;
    loadRefusals(filter.value.trim());
  }
  filter.addEventListener("input", rows);
  sort.addEventListener("change", rows);

  view.replaceChildren(
    h(
      "section",
      { class: "page" },
      h("div", { class: "page-head" }, h("h1", {}, "Clients"), count),
      h("div", { class: "toolbar" }, filter, h("label", { class: "inline" }, "Sort ", sort)),
      h("div", { class: "card flush" }, table, empty),
      refusals,
    ),
  );
  state.onChange = perFrame(rows);
  rows();
  loadClients().catch((err) => toast(errorText(err), "error"));
  const timer = setInterval(() => {
    rows(); // refresh the "x ago" columns
    loadRefusals(filter.value.trim(), { force: true });
  }, 15000);
  return () => {
    clearInterval(timer);
    clearTimeout(refusalTimer);
  };
}
