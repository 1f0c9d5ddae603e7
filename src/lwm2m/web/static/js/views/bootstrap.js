// Bootstrap configurations, server-initiated bootstrap and session history.

import { api } from "../api.js";
import { errorText, h, modal, toast, view } from "../dom.js";
import { state } from "../state.js";


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

export function renderBootstrapView() {
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
