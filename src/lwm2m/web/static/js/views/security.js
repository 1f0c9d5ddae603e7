// The security store: PSK and X.509 entries.

import { api } from "../api.js";
import { errorText, h, modal, toast, view } from "../dom.js";
import { state } from "../state.js";


export function renderSecurityView() {
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
