// One client: registration, object tree from the model, operations, observe charts.

import { api, ApiError, clientUrl, streamClientEvents } from "../api.js";
import { renderChart, Series } from "../chart.js";
import { ago, errorText, h, modal, timeOfDay, toast, view } from "../dom.js";
import { state } from "../state.js";
import { formatValue, inputFor, isNumericType, leaves, readInput } from "../values.js";
import { statusBadge } from "./clients.js";


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

export function renderClientView(endpoint) {
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

  // CoAP message log (COAPLOG events of this client's own stream), off until asked for:
  // the server traces CoAP messages only while someone is looking.
  const COAP_LOG_MAX = 200;
  const coapLog = h("ol", { class: "coap-log", "data-empty": "Turn the log on to see this client's CoAP messages." });
  const coapToggle = h("button", { class: "btn small", type: "button", id: "coaplog-toggle", "aria-pressed": "false" }, "Start");
  let stopCoapLog = null;

  function coapLine(m) {
    const arrow = m.incoming ? "←" : "→";
    const summary = `${arrow} ${m.type} ${m.code} mid=${m.mId}${m.token ? ` tkn=${m.token}` : ""}`;
    const item = h(
      "li",
      { class: m.incoming ? "in" : "out", dataset: { code: m.code, type: m.type } },
      h("time", {}, new Date(m.timestamp).toLocaleTimeString()),
      " ",
      h("span", { class: "coap-summary" }, summary),
      m.options ? h("div", { class: "coap-options" }, m.options) : null,
      m.payload ? h("div", { class: "coap-payload" }, m.payload) : null,
    );
    coapLog.prepend(item);
    while (coapLog.children.length > COAP_LOG_MAX) coapLog.lastChild.remove();
  }

  function setCoapLog(on) {
    if (stopCoapLog) stopCoapLog();
    coapToggle.dataset.live = "false";
    stopCoapLog = on
      ? streamClientEvents(
          endpoint,
          (kind, data) => {
            if (kind === "COAPLOG") coapLine(data);
          },
          (live) => {
            if (stopCoapLog) coapToggle.dataset.live = String(live);
          },
        )
      : null;
    coapToggle.textContent = on ? "Stop" : "Start";
    coapToggle.setAttribute("aria-pressed", String(on));
  }
  coapToggle.addEventListener("click", () => setCoapLog(!stopCoapLog));
  const coapClear = h("button", { class: "btn small ghost", type: "button", onclick: () => coapLog.replaceChildren() }, "Clear");

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
        h("div", { class: "client-title" }, h("h1", {}, client.endpoint), statusBadge(client), client.secure ? h("span", { class: "badge secure" }, client.transport === "coaps+tcp" ? "TLS" : "DTLS") : null),
        h(
          "div",
          { class: "kv-grid" },
          item("Address", client.address),
          item("Transport", client.transport || "coap"),
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
      h(
        "div",
        { class: "client-layout" },
        tree,
        h(
          "aside",
          { class: "card side" },
          h("h3", {}, "Activity"),
          log,
          h("div", { class: "coap-log-head" }, h("h3", {}, "CoAP log"), coapToggle, coapClear),
          coapLog,
        ),
      ),
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
  return () => setCoapLog(false);
}
