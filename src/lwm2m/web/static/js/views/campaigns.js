// One firmware campaign: overall and per-device progress, pause/resume/cancel, kept live by
// the CAMPAIGN and CAMPAIGN_DEVICE events; and the form that starts a campaign.

import { api, onEvent } from "../api.js";
import { errorText, h, modal, perFrame, toast, view } from "../dom.js";

const DONE = ["updated", "unconfirmed", "skipped", "failed", "cancelled"];

export function progressBar(totals) {
  const total = totals.total || 1;
  const seg = (name) => h("span", { class: `seg ${name}`, style: `width:${(100 * (totals[name] || 0)) / total}%`, title: `${name}: ${totals[name] || 0}` });
  return h(
    "div",
    { class: "campaign-progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(totals.total), "aria-valuenow": String(totals.done) },
    h("div", { class: "bar" }, ...DONE.map(seg)),
    h("span", { class: "small muted progress-text" }, `${totals.done}/${totals.total}`),
  );
}

// Asks for the campaign's parameters and starts it; resolves with its id (or null).
export async function newCampaign(image, endpoints) {
  const select = h("select", { class: "value-input", name: "select" }, h("option", { value: "filter" }, "Devices whose name matches"), h("option", { value: "list" }, "These devices"));
  const pattern = h("input", { type: "text", class: "value-input", name: "pattern", value: "*" });
  const list = h("textarea", { class: "value-input mono", name: "endpoints", rows: "4", placeholder: "one endpoint per line" }, endpoints.join("\n"));
  const method = h("select", { class: "value-input", name: "method" }, h("option", { value: "push" }, "push (Write /5/0/0)"), h("option", { value: "coap" }, "pull over CoAP (/5/0/1)"), h("option", { value: "http" }, "pull over HTTP (/5/0/1)"));
  const concurrency = h("input", { type: "number", class: "value-input", name: "concurrency", value: "10", min: "1" });
  const timeout = h("input", { type: "number", class: "value-input", name: "timeout", value: "300", min: "1" });
  const retries = h("input", { type: "number", class: "value-input", name: "retries", value: "1", min: "0" });
  const patternBox = h("label", { class: "field" }, h("span", {}, "Endpoint pattern"), pattern);
  const listBox = h("label", { class: "field" }, h("span", {}, "Endpoints"), list);
  const sync = () => {
    patternBox.hidden = select.value !== "filter";
    listBox.hidden = select.value !== "list";
  };
  select.addEventListener("change", sync);
  sync();
  const body = await modal(
    `Roll out ${image.name} ${image.version}`,
    h(
      "div",
      {},
      h("label", { class: "field" }, h("span", {}, "Devices"), select),
      patternBox,
      listBox,
      h("label", { class: "field" }, h("span", {}, "Delivery"), method),
      h("label", { class: "field" }, h("span", {}, "Devices at a time"), concurrency),
      h("label", { class: "field" }, h("span", {}, "Timeout per attempt (s)"), timeout),
      h("label", { class: "field" }, h("span", {}, "Retries"), retries),
    ),
    {
      submit: "Start campaign",
      collect: () => {
        const out = { firmware: image.id, method: method.value, concurrency: Number(concurrency.value), timeout: Number(timeout.value), retries: Number(retries.value) };
        if (select.value === "filter") out.filter = { endpoint: pattern.value.trim() || "*" };
        else out.endpoints = list.value.split(/\s+/).filter(Boolean);
        return out;
      },
    },
  );
  if (!body) return null;
  try {
    const campaign = await api("POST", "/api/campaigns", { body });
    toast(`Campaign ${campaign.id} started for ${campaign.totals.total} device(s)`, "ok");
    return campaign.id;
  } catch (err) {
    toast(errorText(err), "error");
    return null;
  }
}

export function renderCampaignView(id) {
  const url = `/api/campaigns/${encodeURIComponent(id)}`;
  const head = h("div", { class: "card campaign-head" });
  const rows = h("tbody");
  const devices = new Map();
  let campaign = null;

  function deviceRow(d) {
    return h(
      "tr",
      { dataset: { endpoint: d.endpoint } },
      h("td", { class: "endpoint" }, h("a", { class: "endpoint", href: `#/clients/${encodeURIComponent(d.endpoint)}` }, d.endpoint)),
      h("td", {}, h("span", { class: `badge campaign-${d.state}`, "data-state": d.state }, d.state)),
      h("td", {}, String(d.attempts)),
      h("td", {}, d.lastResult === null ? "" : String(d.lastResult)),
      h("td", { class: "mono small" }, d.oldVersion || "", d.newVersion && d.newVersion !== d.oldVersion ? ` → ${d.newVersion}` : ""),
      h("td", { class: "small" }, d.error),
    );
  }

  function control(verb, label, cls) {
    return h(
      "button",
      {
        type: "button",
        class: `btn ${cls}`,
        "data-action": verb,
        onclick: async () => {
          try {
            campaign = { ...campaign, ...(await api("POST", `${url}/${verb}`)) };
            renderHead();
          } catch (err) {
            toast(errorText(err), "error");
          }
        },
      },
      label,
    );
  }

  function renderHead() {
    const c = campaign;
    const open = c.state === "running" || c.state === "paused";
    head.replaceChildren(
      h(
        "div",
        { class: "client-title" },
        h("h1", {}, `Campaign ${c.id}`),
        h("span", { class: `badge campaign-${c.state}`, id: "campaign-state" }, c.state),
        h(
          "div",
          { class: "toolbar", style: "margin-left:auto" },
          c.state === "running" ? control("pause", "Pause", "ghost") : null,
          c.state === "paused" ? control("resume", "Resume", "primary") : null,
          open ? control("cancel", "Cancel", "danger-outline") : null,
        ),
      ),
      h(
        "div",
        { class: "kv-grid" },
        ...[
          ["Firmware", `${c.firmwareName} ${c.version}`],
          ["Method", c.method],
          ["At a time", c.concurrency],
          ["Timeout", `${c.timeout} s`],
          ["Retries", c.retries],
          ["Updated", c.totals.updated],
          ["Unconfirmed", c.totals.unconfirmed],
          ["Failed", c.totals.failed],
          ["Skipped", c.totals.skipped],
          ["Cancelled", c.totals.cancelled],
        ].map(([k, v]) => h("div", { class: "kv" }, h("span", { class: "k" }, k), h("span", { class: "v", dataset: { total: k.toLowerCase() } }, String(v)))),
      ),
      progressBar(c.totals),
      h("p", { class: "form-error", hidden: !c.error }, c.error || ""),
    );
  }

  function renderRows() {
    rows.replaceChildren(...[...devices.values()].sort((a, b) => a.endpoint.localeCompare(b.endpoint)).map(deviceRow));
  }

  async function load() {
    try {
      const full = await api("GET", url);
      campaign = full;
      devices.clear();
      for (const d of full.devices) devices.set(d.endpoint, d);
      renderHead();
      renderRows();
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  view.replaceChildren(
    h(
      "section",
      { class: "page" },
      h("div", { class: "crumbs" }, h("a", { href: "#/firmware" }, "Firmware"), " / campaign"),
      head,
      h("div", { class: "card flush" }, h("table", { class: "table", id: "campaign-devices" }, h("thead", {}, h("tr", {}, h("th", {}, "Device"), h("th", {}, "State"), h("th", {}, "Attempts"), h("th", {}, "Update Result"), h("th", {}, "Version"), h("th", {}, "Reason"))), rows)),
    ),
  );
  load();
  const redrawRows = perFrame(renderRows);
  return onEvent((kind, data) => {
    if (!campaign) return;
    if (kind === "CAMPAIGN" && data.id === id) {
      campaign = { ...campaign, ...data };
      renderHead();
    } else if (kind === "CAMPAIGN_DEVICE" && data.campaign === id) {
      devices.set(data.endpoint, data);
      redrawRows();
    }
  });
}
