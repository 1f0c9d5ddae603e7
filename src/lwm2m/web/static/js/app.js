// The lwm2m web UI: clients, one client's objects, events, security, bootstrap.
// Plain ES modules, no build step; every view is rebuilt from the REST API and
// kept live by the shared event stream.

import { api, ApiError, clientUrl, onEvent, onStreamStatus, runEventStream, setTokenPrompt } from "./api.js";
import { renderChart, Series } from "./chart.js";
import { formatValue, inputFor, isNumericType, leaves, readInput } from "./values.js";

// ---------------------------------------------------------------- DOM helpers

function h(tag, attrs = {}, ...children) {
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

const view = document.getElementById("view");
const dialog = document.getElementById("dialog");

function toast(message, kind = "info") {
  const box = h("div", { class: `toast ${kind}`, role: "status" }, message);
  document.getElementById("toasts").appendChild(box);
  setTimeout(() => box.classList.add("leaving"), 4200);
  setTimeout(() => box.remove(), 4700);
}

function errorText(err) {
  if (err instanceof ApiError) {
    const code = err.body && err.body.code ? ` (${err.body.code})` : "";
    return `${err.message}${code}`;
  }
  return err && err.message ? err.message : String(err);
}

function ago(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "";
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

// Coalesces bursts (thousands of simulated clients updating) into one render per frame.
function perFrame(fn) {
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

function timeOfDay(date = new Date()) {
  return date.toLocaleTimeString([], { hour12: false });
}

// A modal form; resolves with `collect()`'s result, or null when cancelled.
function modal(title, body, { submit = "OK", collect = () => true, danger = false } = {}) {
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

setTokenPrompt(async (wasWrong) => {
  const input = h("input", { type: "password", autocomplete: "current-password", class: "value-input", required: true });
  return modal(
    "API token",
    h(
      "div",
      {},
      h("p", { class: "muted" }, wasWrong ? "That token was refused; try again." : "This server requires a bearer token (--api-token)."),
      h("label", { class: "field" }, h("span", {}, "Token"), input),
    ),
    { submit: "Use token", collect: () => input.value.trim() || null },
  );
});

// ---------------------------------------------------------------- shared state

const state = {
  clients: new Map(), // endpoint -> client JSON
  events: [], // newest last, bounded
  onChange: null, // the current view's refresh hook
};
const MAX_EVENTS = 500;

function setLive(on) {
  const live = document.getElementById("live");
  live.textContent = on ? "live" : "offline";
  live.classList.toggle("off", !on);
}
onStreamStatus((on) => {
  setLive(on);
  if (on) loadClients().catch(() => {});
});

onEvent((kind, data) => {
  state.events.push({ kind, data, at: new Date() });
  if (state.events.length > MAX_EVENTS) state.events.shift();
  const ep = data.endpoint || data.ep || (data.registration && data.registration.endpoint);
  if (kind === "REGISTRATION") state.clients.set(data.endpoint, data);
  else if (kind === "UPDATED") state.clients.set(data.registration.endpoint, data.registration);
  else if (kind === "DEREGISTRATION") {
    const current = state.clients.get(data.endpoint);
    if (current && current.registrationId === data.registrationId) state.clients.delete(data.endpoint);
    if (data.expired) toast(`${data.endpoint}: registration expired`, "warn");
  } else if (kind === "SLEEPING" || kind === "AWAKE") {
    const c = state.clients.get(ep);
    if (c) state.clients.set(ep, { ...c, sleeping: kind === "SLEEPING" });
  }
  if (state.onChange) state.onChange(kind, data, ep);
});

async function loadClients() {
  const list = await api("GET", "/api/clients");
  state.clients = new Map(list.map((c) => [c.endpoint, c]));
  if (state.onChange) state.onChange("RELOAD", {}, null);
}

// ---------------------------------------------------------------- clients list

function statusBadge(c) {
  if (c.sleeping) return h("span", { class: "badge sleeping", title: "queue mode, asleep" }, "sleeping");
  return h("span", { class: "badge online" }, "online");
}

function renderClientsView() {
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

// ---------------------------------------------------------------- one client

function objectInstances(client) {
  // object id -> sorted instance ids (objects announced without instances get [])
  const map = new Map();
  for (const link of client.objectLinks) {
    const parts = link.url.split("/").filter(Boolean).map(Number);
    if (!parts.length || parts.some((n) => !Number.isInteger(n))) continue;
    if (!map.has(parts[0])) map.set(parts[0], new Set());
    if (parts.length >= 2) map.get(parts[0]).add(parts[1]);
  }
  return new Map([...map.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => [k, [...v].sort((a, b) => a - b)]));
}

function renderClientView(endpoint) {
  const specs = new Map(); // object id -> spec
  const values = new Map(); // path -> value
  const series = new Map(); // path -> Series
  const observed = new Set();
  const cells = new Map(); // path -> {value, chart, observeBtn}
  const log = h("ol", { class: "mini-log", "data-empty": "Reads, writes and notifications appear here." });
  const header = h("div", { class: "client-head" });
  const tree = h("div", { class: "tree" });

  function setValue(path, value) {
    values.set(path, value);
    const cell = cells.get(path);
    const spec = specFor(path);
    if (typeof value === "number") {
      if (!series.has(path)) series.set(path, new Series());
      if (observed.has(path)) series.get(path).push(value);
    }
    if (cell) {
      cell.value.textContent = formatValue(value, spec);
      cell.value.classList.remove("unread");
      if (cell.unit) cell.unit.hidden = false;
      cell.value.classList.remove("flash");
      void cell.value.offsetWidth;
      cell.value.classList.add("flash");
      cell.value.title = `updated ${timeOfDay()}`;
      drawChart(path);
    }
  }

  function drawChart(path) {
    const cell = cells.get(path);
    if (!cell) return;
    const spec = specFor(path);
    if (observed.has(path) && spec && isNumericType(spec.type)) {
      cell.chart.hidden = false;
      cell.chart.replaceChildren(renderChart(series.get(path) || new Series(), { unit: spec.units }));
    } else {
      cell.chart.hidden = true;
      cell.chart.replaceChildren();
    }
  }

  function specFor(path) {
    const [oid, , rid] = path.split("/").filter(Boolean).map(Number);
    const obj = specs.get(oid);
    return obj ? obj.resources.find((r) => r.id === rid) : undefined;
  }

  const rawBoxes = new Map(); // object id without a model -> <pre> of its last values

  function showResult(result) {
    const got = Object.entries(leaves(result.content));
    for (const [p, v] of got) setValue(p, v);
    for (const [oid, box] of rawBoxes) {
      const mine = got.filter(([p]) => p.split("/")[1] === String(oid));
      if (mine.length) box.textContent = mine.map(([p, v]) => `${p}  ${formatValue(v)}`).join("\n");
    }
  }

  function logLine(text, kind = "info") {
    log.prepend(h("li", { class: kind }, h("time", {}, timeOfDay()), " ", text));
    while (log.children.length > 60) log.lastChild.remove();
  }

  async function op(label, fn) {
    try {
      const result = await fn();
      logLine(`${label} → ${result && result.status ? result.status : "done"}`, "ok");
      return result;
    } catch (err) {
      logLine(`${label} → ${errorText(err)}`, "error");
      toast(`${label}: ${errorText(err)}`, "error");
      return null;
    }
  }

  async function read(path) {
    const result = await op(`Read ${path}`, () => api("GET", clientUrl(endpoint, path)));
    if (result) showResult(result);
  }

  async function write(path, spec) {
    const current = values.get(path);
    let body;
    if (spec && spec.multiple) {
      const rows = h("div", { class: "multi-rows" });
      const addRow = (ri, v) => {
        const idInput = h("input", { type: "number", min: "0", value: ri, class: "ri-input", "aria-label": "instance id" });
        const row = h("div", { class: "multi-row" }, idInput, inputFor(spec, v), h("button", { type: "button", class: "btn ghost small", onclick: () => row.remove() }, "✕"));
        rows.appendChild(row);
      };
      const existing = current && current.instances ? Object.entries(current.instances) : [];
      if (existing.length) existing.forEach(([k, v]) => addRow(k, v));
      else addRow(0, undefined);
      body = await modal(
        `Write ${path}`,
        h("div", {}, h("p", { class: "muted" }, `${spec.name} · ${spec.type}${spec.units ? " · " + spec.units : ""}`), rows, h("button", { type: "button", class: "btn ghost small", onclick: () => addRow(rows.children.length, undefined) }, "+ instance")),
        {
          submit: "Write",
          collect: () => {
            const instances = {};
            for (const row of rows.children) {
              const [idInput, valueInput] = row.querySelectorAll("input, select");
              instances[idInput.value] = readInput(valueInput);
            }
            return { instances };
          },
        },
      );
    } else {
      const input = inputFor(spec, current);
      body = await modal(
        `Write ${path}`,
        h(
          "div",
          {},
          spec ? h("p", { class: "muted" }, `${spec.name} · ${spec.type}${spec.units ? " · " + spec.units : ""}${spec.range ? " · " + spec.range : ""}${spec.type === "Time" ? " · UTC" : ""}`) : null,
          h("label", { class: "field" }, h("span", {}, "Value"), input),
        ),
        { submit: "Write", collect: () => ({ value: readInput(input) }) },
      );
    }
    if (body === null) return;
    const result = await op(`Write ${path}`, () => api("PUT", clientUrl(endpoint, path), { body }));
    if (result) {
      if ("value" in body) setValue(path, body.value);
      else setValue(path, { multiple: true, instances: body.instances });
      toast(`Wrote ${path}`, "ok");
    }
  }

  async function execute(path, spec) {
    const input = h("input", { type: "text", class: "value-input", placeholder: "optional, e.g. 0='v',1" });
    const args = await modal(
      `Execute ${path}`,
      h("div", {}, spec ? h("p", { class: "muted" }, spec.name) : null, h("label", { class: "field" }, h("span", {}, "Arguments"), input)),
      { submit: "Execute", collect: () => input.value },
    );
    if (args === null) return;
    const result = await op(`Execute ${path}`, () => api("POST", clientUrl(endpoint, path), { text: args }));
    if (result) toast(`Executed ${path}`, "ok");
  }

  async function toggleObserve(path, button) {
    if (observed.has(path)) {
      const result = await op(`Cancel observe ${path}`, () => api("DELETE", clientUrl(endpoint, path, "observe")));
      if (result) {
        observed.delete(path);
        button.classList.remove("on");
        button.setAttribute("aria-pressed", "false");
        drawChart(path);
      }
      return;
    }
    const result = await op(`Observe ${path}`, () => api("POST", clientUrl(endpoint, path, "observe")));
    if (result) {
      observed.add(path);
      button.classList.add("on");
      button.setAttribute("aria-pressed", "true");
      showResult(result); // records the first value of the chart too
      drawChart(path);
    }
  }

  async function createInstance(oid) {
    const spec = specs.get(oid);
    const idInput = h("input", { type: "number", min: "0", max: "65534", value: "0", class: "value-input" });
    const fields = [];
    for (const r of (spec ? spec.resources : []).filter((r) => r.operations.includes("W") && !r.multiple)) {
      const input = inputFor(r, undefined);
      const use = h("input", { type: "checkbox", checked: r.mandatory ? true : undefined, "aria-label": `include ${r.name}` });
      fields.push({ r, input, use });
    }
    const result = await modal(
      `Create ${spec ? spec.name : "instance"} (/${oid})`,
      h(
        "div",
        { class: "create-form" },
        h("label", { class: "field" }, h("span", {}, "Instance ID"), idInput),
        fields.length ? h("p", { class: "muted" }, "Resources to send (tick to include):") : null,
        ...fields.map(({ r, input, use }) => h("div", { class: "field-row" }, use, h("span", { class: "field-name" }, `${r.id} · ${r.name}${r.units ? " (" + r.units + ")" : ""}`), input)),
      ),
      {
        submit: "Create",
        collect: () => {
          const resources = fields.filter((f) => f.use.checked).map((f) => ({ id: f.r.id, value: readInput(f.input) }));
          return { id: Number(idInput.value), resources };
        },
      },
    );
    if (result === null) return;
    const answer = await op(`Create /${oid}/${result.id}`, () => api("POST", clientUrl(endpoint, String(oid)), { body: result }));
    if (answer) toast(`Created ${answer.location || `/${oid}/${result.id}`}`, "ok");
  }

  async function deleteInstance(path) {
    const ok = await modal(`Delete ${path}?`, h("p", {}, "The device removes this object instance."), { submit: "Delete", danger: true });
    if (!ok) return;
    const result = await op(`Delete ${path}`, () => api("DELETE", clientUrl(endpoint, path)));
    if (result) toast(`Deleted ${path}`, "ok");
  }

  function opButton(label, title, onclick, extra = {}) {
    return h("button", { type: "button", class: "btn small op", title, onclick, ...extra }, label);
  }

  function resourceRow(oid, iid, r) {
    const path = `/${oid}/${iid}/${r.id}`;
    const known = values.has(path);
    const readable = r.operations.includes("R");
    const valueEl = h("span", { class: known || !readable ? "value" : "value unread", dataset: { path } }, known ? formatValue(values.get(path), r) : "");
    const unitEl = r.units ? h("span", { class: "value-unit", hidden: !known }, r.units) : null;
    const chart = h("div", { class: "chart-box", hidden: true });
    const ops = h("div", { class: "ops" });
    let observeBtn = null;
    if (r.operations.includes("R")) {
      ops.appendChild(opButton("Read", `Read ${path}`, () => read(path), { dataset: { op: "read", path } }));
      observeBtn = opButton("Observe", `Observe ${path}`, () => toggleObserve(path, observeBtn), { "aria-pressed": "false", class: "btn small op toggle", dataset: { op: "observe", path } });
      ops.appendChild(observeBtn);
      ops.appendChild(opButton("⚙", `Notification attributes of ${path}`, () => writeAttributes(path), { class: "btn small op icon", "aria-label": `Attributes of ${path}`, dataset: { op: "attributes", path } }));
    }
    if (r.operations.includes("W")) ops.appendChild(opButton("Write", `Write ${path}`, () => write(path, r), { dataset: { op: "write", path } }));
    if (r.operations === "E") ops.appendChild(opButton("Execute", `Execute ${path}`, () => execute(path, r), { class: "btn small op exec", dataset: { op: "execute", path } }));
    cells.set(path, { value: valueEl, unit: unitEl, chart, observeBtn });
    return h(
      "div",
      { class: "res-row", dataset: { path } },
      h("div", { class: "res-id mono" }, r.id),
      h(
        "div",
        { class: "res-main" },
        h("div", { class: "res-name", title: `${r.description}${r.mandatory ? " (mandatory)" : ""}` }, r.name),
        h("div", { class: "res-meta" }, h("span", { class: "tag" }, r.type === "None" ? "Executable" : r.type), r.multiple ? h("span", { class: "tag" }, "multiple") : null, h("span", { class: "tag ops-tag" }, r.operations || "–"), r.units ? h("span", { class: "unit" }, r.units) : null),
      ),
      h("div", { class: "res-value" }, valueEl, unitEl, chart),
      ops,
    );
  }

  function unknownObjectCard(oid, instances) {
    return h(
      "div",
      { class: "card object" },
      h("div", { class: "object-head" }, h("h3", {}, `Object ${oid}`, h("span", { class: "muted small" }, " · no model")), h("div", { class: "ops" }, opButton("Read", `Read /${oid}`, () => read(`/${oid}`)))),
      h("div", { class: "raw" }, ...instances.map((iid) => h("div", { class: "mono" }, `/${oid}/${iid}`)), rawBox(oid)),
    );
  }

  function rawBox(oid) {
    const box = h("pre", { class: "raw-values mono" });
    rawBoxes.set(oid, box);
    return box;
  }

  async function writeAttributes(path) {
    const names = ["pmin", "pmax", "gt", "lt", "st"];
    const inputs = Object.fromEntries(names.map((n) => [n, h("input", { type: "number", step: n.startsWith("p") ? "1" : "any", min: n.startsWith("p") ? "0" : undefined, class: "value-input", placeholder: "unchanged" })]));
    const current = h("p", { class: "muted small" }, "Reading current attributes…");
    api("GET", clientUrl(endpoint, path, "discover"))
      .then((result) => {
        const link = (result.objectLinks || []).find((l) => l.url === path);
        const attrs = link ? Object.entries(link.attributes).filter(([k]) => names.includes(k) || k.startsWith("ep")) : [];
        current.textContent = attrs.length ? `Current: ${attrs.map(([k, v]) => `${k}=${v}`).join(", ")}` : "No attributes set on this path.";
      })
      .catch((err) => (current.textContent = `Discover failed: ${errorText(err)}`));
    const query = await modal(
      `Notification attributes of ${path}`,
      h("div", {}, current, h("div", { class: "attr-grid" }, ...names.map((n) => h("label", { class: "field" }, h("span", {}, n), inputs[n]))), h("p", { class: "muted small" }, "Empty fields are left as they are.")),
      {
        submit: "Set",
        collect: () => {
          const q = {};
          for (const n of names) if (inputs[n].value !== "") q[n] = inputs[n].value;
          if (!Object.keys(q).length) throw new Error("set at least one attribute");
          return q;
        },
      },
    );
    if (!query) return;
    const result = await op(`Write-Attributes ${path}`, () => api("PUT", clientUrl(endpoint, path, "attributes"), { query }));
    if (result) toast(`Attributes of ${path} set`, "ok");
  }

  function renderTree(client) {
    const objects = objectInstances(client);
    const cards = [];
    for (const [oid, instances] of objects) {
      const spec = specs.get(oid);
      if (!spec) {
        cards.push(unknownObjectCard(oid, instances));
        continue;
      }
      const head = h(
        "div",
        { class: "object-head" },
        h("h3", {}, spec.name, h("span", { class: "muted small" }, ` /${oid}`), spec.version && spec.version !== "1.0" ? h("span", { class: "tag" }, `v${spec.version}`) : null),
        h("div", { class: "ops" }, opButton("Read all", `Read /${oid}`, () => read(`/${oid}`)), spec.multiple ? opButton("+ Create", `Create an instance of /${oid}`, () => createInstance(oid), { class: "btn small op primary", dataset: { op: "create", path: `/${oid}` } }) : null),
      );
      const sections = instances.length ? instances : [];
      const body = sections.map((iid) =>
        h(
          "details",
          { class: "instance", open: true },
          h(
            "summary",
            {},
            h("span", { class: "mono" }, `/${oid}/${iid}`),
            h(
              "span",
              { class: "ops" },
              opButton("Read", `Read /${oid}/${iid}`, (ev) => (ev.preventDefault(), read(`/${oid}/${iid}`)), { dataset: { op: "read", path: `/${oid}/${iid}` } }),
              spec.multiple ? opButton("Delete", `Delete /${oid}/${iid}`, (ev) => (ev.preventDefault(), deleteInstance(`/${oid}/${iid}`)), { class: "btn small op danger-outline" }) : null,
            ),
          ),
          h("div", { class: "resources" }, ...spec.resources.map((r) => resourceRow(oid, iid, r))),
        ),
      );
      if (!sections.length) body.push(h("p", { class: "muted pad" }, "No instances announced."));
      cards.push(h("div", { class: "card object", dataset: { object: oid } }, head, h("p", { class: "muted desc" }, spec.description.split(".")[0]), ...body));
    }
    tree.replaceChildren(...cards);
    for (const path of observed) drawChart(path);
  }

  function renderHeader(client) {
    if (!client) {
      header.replaceChildren(h("div", { class: "card warn" }, h("strong", {}, endpoint), " is not registered (any more). ", h("a", { href: "#/" }, "Back to clients")));
      return;
    }
    const item = (label, value) => h("div", { class: "kv" }, h("span", { class: "k" }, label), h("span", { class: "v" }, value));
    header.replaceChildren(
      h(
        "div",
        { class: "card client-card" },
        h("div", { class: "client-title" }, h("h1", {}, client.endpoint), statusBadge(client), client.secure ? h("span", { class: "badge secure" }, "DTLS") : null),
        h(
          "div",
          { class: "kv-grid" },
          item("Address", client.address),
          item("LwM2M", client.lwM2mVersion),
          item("Binding", client.bindingMode + (client.queuemode ? " · queue" : "")),
          item("Lifetime", `${client.lifetime} s`),
          item("Registered", `${new Date(client.registrationDate).toLocaleString()}`),
          item("Last update", ago(client.lastUpdate)),
          item("Registration ID", client.registrationId),
          client.endpointType !== null && client.endpointType !== undefined ? item("ept", String(client.endpointType)) : null,
        ),
      ),
    );
  }

  view.replaceChildren(
    h(
      "section",
      { class: "page client-page" },
      h("div", { class: "crumbs" }, h("a", { href: "#/" }, "Clients"), " / ", h("span", {}, endpoint)),
      header,
      h("div", { class: "client-layout" }, tree, h("aside", { class: "card side" }, h("h3", {}, "Activity"), log)),
    ),
  );

  let client = state.clients.get(endpoint);
  renderHeader(client);
  (async () => {
    try {
      client = await api("GET", `/api/clients/${encodeURIComponent(endpoint)}`);
      state.clients.set(endpoint, client);
      const list = await api("GET", `/api/objectspecs/${encodeURIComponent(endpoint)}`);
      for (const s of list) specs.set(s.id, s);
      renderHeader(client);
      renderTree(client);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) renderHeader(null);
      else toast(errorText(err), "error");
    }
  })();

  state.onChange = (kind, data, ep) => {
    if (ep !== endpoint) return;
    if (kind === "NOTIFICATION") {
      if (data.kind === "single" && data.val) {
        const got = Object.entries(leaves(data.val));
        for (const [p, v] of got) setValue(p, v);
        const shown = got.length === 1 ? ` = ${formatValue(got[0][1], specFor(got[0][0]))}` : "";
        logLine(`Notification ${data.res}${shown}`, "note");
      } else if (data.kind === "composite" && data.val) {
        for (const node of Object.values(data.val)) for (const [p, v] of Object.entries(leaves(node))) setValue(p, v);
        logLine("Composite notification", "note");
      }
    } else if (kind === "SEND" && data.val) {
      for (const node of Object.values(data.val)) if (node) for (const [p, v] of Object.entries(leaves(node))) setValue(p, v);
      logLine("Send", "note");
    } else if (kind === "REGISTRATION" || kind === "UPDATED") {
      const fresh = state.clients.get(endpoint);
      logLine(kind === "REGISTRATION" ? "Registered" : "Updated", "info");
      if (fresh) {
        const relinks = JSON.stringify(fresh.objectLinks) !== JSON.stringify(client && client.objectLinks);
        client = fresh;
        renderHeader(client);
        if (relinks) {
          api("GET", `/api/objectspecs/${encodeURIComponent(endpoint)}`)
            .then((list) => {
              for (const s of list) specs.set(s.id, s);
              renderTree(client);
            })
            .catch(() => {});
        }
      }
      if (kind === "REGISTRATION") observed.clear();
    } else if (kind === "DEREGISTRATION") {
      logLine(data.expired ? "Registration expired" : "Deregistered", "warn");
      if (!state.clients.has(endpoint)) renderHeader(null);
    } else if (kind === "SLEEPING" || kind === "AWAKE") {
      logLine(kind === "SLEEPING" ? "Sleeping" : "Awake", "info");
      client = state.clients.get(endpoint) || client;
      renderHeader(client);
    }
  };
  return () => {};
}

// ---------------------------------------------------------------- events

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

function renderEventsView() {
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

// ---------------------------------------------------------------- security

function renderSecurityView() {
  const body = h("tbody");
  const table = h("table", { class: "table" }, h("thead", {}, h("tr", {}, h("th", {}, "Endpoint"), h("th", {}, "Mode"), h("th", {}, "Identity / names"), h("th", {}, ""))), body);

  async function load() {
    try {
      const entries = await api("GET", "/api/security/clients");
      body.replaceChildren(
        ...entries.map((e) =>
          h(
            "tr",
            {},
            h("td", { class: "endpoint" }, e.endpoint),
            h("td", {}, e.psk ? h("span", { class: "badge psk" }, "PSK") : null, e.x509 ? h("span", { class: "badge x509" }, "X.509") : null),
            h("td", { class: "mono" }, e.psk ? e.psk.identity : "", e.x509 ? `${e.x509.directTrust ? "pinned certificate" : "CA-signed"}${e.x509.names.length ? " · " + e.x509.names.join(", ") : ""}` : ""),
            h(
              "td",
              { class: "right" },
              h("button", { type: "button", class: "btn small ghost", onclick: () => edit(e) }, "Edit"),
              h("button", { type: "button", class: "btn small danger-outline", onclick: () => remove(e.endpoint) }, "Delete"),
            ),
          ),
        ),
      );
      if (!entries.length) body.appendChild(h("tr", {}, h("td", { colspan: "4", class: "muted center" }, "No security entries: clients connect over plain CoAP or with credentials from --security.")));
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  async function remove(endpoint) {
    const ok = await modal(`Delete security entry of ${endpoint}?`, h("p", {}, "The client can no longer authenticate with these credentials."), { submit: "Delete", danger: true });
    if (!ok) return;
    try {
      await api("DELETE", `/api/security/clients/${encodeURIComponent(endpoint)}`);
      toast(`Deleted ${endpoint}`, "ok");
      load();
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  async function edit(existing) {
    const ep = h("input", { type: "text", class: "value-input", value: existing ? existing.endpoint : "", required: true, readonly: existing ? true : undefined });
    const mode = h("select", { class: "value-input" }, h("option", { value: "psk" }, "PSK"), h("option", { value: "x509" }, "X.509 certificate"));
    mode.value = existing && existing.x509 && !existing.psk ? "x509" : "psk";
    const identity = h("input", { type: "text", class: "value-input", value: existing && existing.psk ? existing.psk.identity : "" });
    const key = h("input", { type: "text", class: "value-input mono", placeholder: "hex, e.g. 000102030405", autocomplete: "off" });
    const cert = h("textarea", { class: "value-input mono", rows: "4", placeholder: "-----BEGIN CERTIFICATE----- (optional: pin this certificate)" });
    const names = h("input", { type: "text", class: "value-input", placeholder: "required CN/SAN names, comma separated (optional)", value: existing && existing.x509 ? existing.x509.names.join(", ") : "" });
    const pskBox = h("div", {}, h("label", { class: "field" }, h("span", {}, "PSK identity"), identity), h("label", { class: "field" }, h("span", {}, "PSK key (hex)"), key));
    const x509Box = h("div", {}, h("label", { class: "field" }, h("span", {}, "Certificate (PEM)"), cert), h("label", { class: "field" }, h("span", {}, "Names"), names));
    const sync = () => {
      pskBox.hidden = mode.value !== "psk";
      x509Box.hidden = mode.value !== "x509";
    };
    mode.addEventListener("change", sync);
    sync();
    const entry = await modal(
      existing ? `Edit ${existing.endpoint}` : "New security entry",
      h("div", {}, h("label", { class: "field" }, h("span", {}, "Endpoint"), ep), h("label", { class: "field" }, h("span", {}, "Mode"), mode), pskBox, x509Box),
      {
        submit: "Save",
        collect: () => {
          if (!ep.value.trim()) throw new Error("endpoint is required");
          const out = { endpoint: ep.value.trim() };
          if (mode.value === "psk") {
            if (!identity.value || !key.value) throw new Error("PSK identity and key are required (keys are never shown, re-enter it)");
            out.psk = { identity: identity.value, key: key.value.trim() };
          } else {
            out.x509 = {};
            if (cert.value.trim()) out.x509.certificate = cert.value.trim();
            const list = names.value.split(",").map((s) => s.trim()).filter(Boolean);
            if (list.length) out.x509.names = list;
          }
          return out;
        },
      },
    );
    if (!entry) return;
    try {
      await api("PUT", "/api/security/clients", { body: entry });
      toast(`Saved ${entry.endpoint}`, "ok");
      load();
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  view.replaceChildren(
    h(
      "section",
      { class: "page" },
      h("div", { class: "page-head" }, h("h1", {}, "Security"), h("button", { type: "button", class: "btn primary", onclick: () => edit(null) }, "+ New entry")),
      h("p", { class: "muted" }, "Credentials the LwM2M server accepts, per endpoint. PSK keys are write-only."),
      h("div", { class: "card flush" }, table),
    ),
  );
  state.onChange = null;
  load();
  return () => {};
}

// ---------------------------------------------------------------- bootstrap

const CONFIG_TEMPLATE = {
  servers: [
    {
      short_server_id: 101,
      uri: "coap://127.0.0.1:5683",
      lifetime: 300,
      binding: "U",
      security: { mode: "nosec" },
    },
  ],
};

function renderBootstrapView() {
  const configsBody = h("div", { class: "config-list" });
  const sessionsBody = h("tbody");

  async function load() {
    try {
      const configs = await api("GET", "/api/bootstrap");
      const entries = Object.entries(configs).sort(([a], [b]) => a.localeCompare(b));
      configsBody.replaceChildren(
        ...entries.map(([ep, cfg]) =>
          h(
            "div",
            { class: "config-item" },
            h("div", {}, h("div", { class: "endpoint" }, ep), h("div", { class: "muted small" }, (cfg.servers || []).map((s) => s.uri).join(", ") || "no servers")),
            h(
              "div",
              { class: "row" },
              h("button", { type: "button", class: "btn small ghost", onclick: () => edit(ep, cfg) }, "Edit"),
              h("button", { type: "button", class: "btn small ghost", onclick: () => push(ep) }, "Push"),
              h("button", { type: "button", class: "btn small danger-outline", onclick: () => remove(ep) }, "Delete"),
            ),
          ),
        ),
      );
      if (!entries.length) configsBody.appendChild(h("p", { class: "muted pad" }, "No bootstrap configurations."));
      const sessions = await api("GET", "/api/bootstrap/sessions");
      sessionsBody.replaceChildren(
        ...sessions.slice(0, 50).map((s) =>
          h(
            "tr",
            {},
            h("td", {}, s.started_at ? new Date(s.started_at * 1000).toLocaleString() : ""),
            h("td", { class: "endpoint" }, s.endpoint),
            h("td", {}, s.mode ? s.mode.replace("_", " ") : ""),
            h("td", { class: "mono" }, s.address || ""),
            h("td", {}, h("span", { class: `badge ${s.status === "finished" ? "online" : s.status === "failed" ? "failed" : "sleeping"}` }, s.status || "")),
            h("td", { class: "muted" }, s.message || (s.steps ? `${s.steps.length} steps` : "")),
          ),
        ),
      );
      if (!sessions.length) sessionsBody.appendChild(h("tr", {}, h("td", { colspan: "6", class: "muted center" }, "No sessions yet.")));
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  async function edit(endpoint, config) {
    const ep = h("input", { type: "text", class: "value-input", value: endpoint || "", readonly: endpoint ? true : undefined, required: true });
    const text = h("textarea", { class: "value-input mono code", rows: "18", spellcheck: "false" }, JSON.stringify(config || CONFIG_TEMPLATE, null, 2));
    const result = await modal(
      endpoint ? `Bootstrap configuration of ${endpoint}` : "New bootstrap configuration",
      h("div", { class: "wide" }, h("label", { class: "field" }, h("span", {}, "Endpoint"), ep), h("label", { class: "field" }, h("span", {}, "Configuration (JSON)"), text), h("p", { class: "muted small" }, 'Keys shown as "<hidden>" keep their stored value.')),
      {
        submit: "Save",
        collect: () => {
          if (!ep.value.trim()) throw new Error("endpoint is required");
          let body;
          try {
            body = JSON.parse(text.value);
          } catch (err) {
            throw new Error(`not valid JSON: ${err.message}`);
          }
          return { endpoint: ep.value.trim(), body };
        },
      },
    );
    if (!result) return;
    try {
      await api("PUT", `/api/bootstrap/${encodeURIComponent(result.endpoint)}`, { body: result.body });
      toast(`Saved ${result.endpoint}`, "ok");
      load();
    } catch (err) {
      toast(errorText(err), "error");
      edit(result.endpoint, result.body);
    }
  }

  async function push(endpoint) {
    const address = h("input", { type: "text", class: "value-input mono", placeholder: "host:port of the client", required: true });
    const result = await modal(`Bootstrap ${endpoint} now`, h("label", { class: "field" }, h("span", {}, "Client address"), address), { submit: "Push", collect: () => address.value.trim() });
    if (!result) return;
    try {
      const session = await api("POST", `/api/bootstrap/${encodeURIComponent(endpoint)}/push`, { query: { address: result } });
      toast(`Bootstrap of ${endpoint}: ${session.status}`, "ok");
    } catch (err) {
      toast(`Bootstrap of ${endpoint}: ${errorText(err)}`, "error");
    }
    load();
  }

  async function remove(endpoint) {
    const ok = await modal(`Delete bootstrap configuration of ${endpoint}?`, h("p", {}, "The client can no longer bootstrap from this server."), { submit: "Delete", danger: true });
    if (!ok) return;
    try {
      await api("DELETE", `/api/bootstrap/${encodeURIComponent(endpoint)}`);
      load();
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  view.replaceChildren(
    h(
      "section",
      { class: "page" },
      h("div", { class: "page-head" }, h("h1", {}, "Bootstrap"), h("button", { type: "button", class: "btn primary", onclick: () => edit(null, null) }, "+ New configuration")),
      h("div", { class: "card" }, h("h3", {}, "Configurations"), configsBody),
      h(
        "div",
        { class: "card flush" },
        h("h3", { class: "pad" }, "Sessions"),
        h("table", { class: "table" }, h("thead", {}, h("tr", {}, ...["Started", "Endpoint", "Mode", "Address", "Status", "Detail"].map((t) => h("th", {}, t)))), sessionsBody),
      ),
    ),
  );
  state.onChange = (kind) => {
    if (kind.startsWith("BOOTSTRAP_FINISHED") || kind.startsWith("BOOTSTRAP_FAILED") || kind === "BOOTSTRAP_STARTED") load();
  };
  load();
  return () => {};
}

// ---------------------------------------------------------------- router

let cleanup = () => {};
let info = null;

async function route() {
  cleanup();
  state.onChange = null;
  const hash = location.hash.replace(/^#/, "") || "/";
  const parts = hash.split("/").filter(Boolean);
  let tab = "clients";
  if (parts[0] === "clients" && parts[1]) cleanup = renderClientView(decodeURIComponent(parts.slice(1).join("/")));
  else if (parts[0] === "events") (tab = "events"), (cleanup = renderEventsView());
  else if (parts[0] === "security") (tab = "security"), (cleanup = renderSecurityView());
  else if (parts[0] === "bootstrap") (tab = "bootstrap"), (cleanup = renderBootstrapView());
  else cleanup = renderClientsView();
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.tab === tab);
}

async function start() {
  try {
    info = await api("GET", "/api/server");
    document.querySelector('#nav a[data-tab="clients"]').hidden = !info.lwm2mServer;
    document.querySelector('#nav a[data-tab="security"]').hidden = !info.lwm2mServer;
    document.querySelector('#nav a[data-tab="bootstrap"]').hidden = !info.bootstrapServer;
    if (!info.lwm2mServer && (location.hash === "" || location.hash === "#/")) location.hash = "#/bootstrap";
  } catch (err) {
    toast(errorText(err), "error");
  }
  window.addEventListener("hashchange", route);
  route();
  runEventStream();
}

start();
