// The client list: live status, filter and sort.

import { ago, errorText, h, perFrame, toast, view } from "../dom.js";
import { loadClients, state } from "../state.js";


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
          h("td", {}, h("a", { href: `#/clients/${encodeURIComponent(c.endpoint)}`, class: "endpoint" }, c.endpoint), c.secure ? h("span", { class: "lock", title: "DTLS" }, " 🔒") : null),
          h("td", { class: "mono" }, c.address),
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
    ),
  );
  state.onChange = perFrame(rows);
  rows();
  loadClients().catch((err) => toast(errorText(err), "error"));
  const timer = setInterval(rows, 15000); // refresh the "x ago" columns
  return () => clearInterval(timer);
}
