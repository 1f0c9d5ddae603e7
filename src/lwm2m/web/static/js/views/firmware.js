// Firmware images (list, upload, delete) and the campaigns that roll them out.

import { api, onEvent } from "../api.js";
import { errorText, h, modal, perFrame, toast, view } from "../dom.js";
import { state } from "../state.js";
import { newCampaign, progressBar } from "./campaigns.js";


function size(bytes) {
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(1)} KiB`;
  return `${bytes} B`;
}

export function renderFirmwareView() {
  const images = h("tbody");
  const campaigns = h("tbody");
  let known = [];

  async function loadImages() {
    try {
      known = await api("GET", "/api/firmware");
    } catch (err) {
      images.replaceChildren(h("tr", {}, h("td", { colspan: "6", class: "muted center" }, err.status === 404 ? "No firmware repository on this server." : errorText(err))));
      return;
    }
    images.replaceChildren(
      ...known.map((img) =>
        h(
          "tr",
          { dataset: { image: img.id } },
          h("td", { class: "endpoint" }, img.name),
          h("td", {}, img.version),
          h("td", {}, size(img.size)),
          h("td", { class: "mono", title: img.sha256 }, img.sha256.slice(0, 16) + "…"),
          h("td", { class: "mono small" }, Object.entries(img.target || {}).map(([k, v]) => `${k}=${v}`).join(", ")),
          h(
            "td",
            { class: "right" },
            h("button", { type: "button", class: "btn small primary", "data-action": "campaign", onclick: () => start(img) }, "Roll out…"),
            h("button", { type: "button", class: "btn small danger-outline", onclick: () => remove(img) }, "Delete"),
          ),
        ),
      ),
    );
    if (!known.length) images.appendChild(h("tr", {}, h("td", { colspan: "6", class: "muted center" }, "No images yet: upload one.")));
  }

  async function loadCampaigns() {
    let list;
    try {
      list = await api("GET", "/api/campaigns");
    } catch (err) {
      campaigns.replaceChildren(h("tr", {}, h("td", { colspan: "6", class: "muted center" }, err.status === 404 ? "Campaigns need a firmware repository." : errorText(err))));
      return;
    }
    campaigns.replaceChildren(
      ...list.reverse().map((c) =>
        h(
          "tr",
          { class: "row-link", dataset: { campaign: c.id }, onclick: () => (location.hash = `#/campaigns/${encodeURIComponent(c.id)}`) },
          h("td", { class: "endpoint" }, c.id),
          h("td", {}, `${c.firmwareName} ${c.version}`),
          h("td", {}, c.method),
          h("td", {}, h("span", { class: `badge campaign-${c.state}` }, c.state)),
          h("td", {}, progressBar(c.totals)),
          h("td", { class: "small muted" }, new Date(c.created * 1000).toLocaleString()),
        ),
      ),
    );
    if (!list.length) campaigns.appendChild(h("tr", {}, h("td", { colspan: "6", class: "muted center" }, "No campaigns yet.")));
  }

  async function upload() {
    const file = h("input", { type: "file", class: "value-input", required: true, name: "file" });
    const version = h("input", { type: "text", class: "value-input", required: true, name: "version", placeholder: "what /3/0/3 reports once updated" });
    const name = h("input", { type: "text", class: "value-input", name: "name", placeholder: "default: the file name" });
    const form = await modal(
      "Upload firmware",
      h("div", {}, h("label", { class: "field" }, h("span", {}, "Image file"), file), h("label", { class: "field" }, h("span", {}, "Version"), version), h("label", { class: "field" }, h("span", {}, "Name"), name)),
      {
        submit: "Upload",
        collect: () => {
          if (!file.files.length) throw new Error("choose a file");
          if (!version.value.trim()) throw new Error("version is required");
          return { file: file.files[0], version: version.value.trim(), name: name.value.trim() || file.files[0].name };
        },
      },
    );
    if (!form) return;
    try {
      const bytes = await form.file.arrayBuffer();
      const img = await api("POST", "/api/firmware", { bytes, query: { name: form.name, version: form.version } });
      toast(`Uploaded ${img.name} ${img.version}`, "ok");
      loadImages();
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  async function remove(img) {
    const ok = await modal(`Delete ${img.name} ${img.version}?`, h("p", {}, "Devices can no longer download it."), { submit: "Delete", danger: true });
    if (!ok) return;
    try {
      await api("DELETE", `/api/firmware/${encodeURIComponent(img.id)}`);
      toast(`Deleted ${img.name} ${img.version}`, "ok");
      loadImages();
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  async function start(img) {
    const id = await newCampaign(img, [...state.clients.keys()]);
    if (id) location.hash = `#/campaigns/${encodeURIComponent(id)}`;
  }

  view.replaceChildren(
    h(
      "section",
      { class: "page" },
      h("div", { class: "page-head" }, h("h1", {}, "Firmware"), h("button", { type: "button", class: "btn primary", id: "upload-firmware", onclick: upload }, "+ Upload image")),
      h("div", { class: "card flush" }, h("table", { class: "table", id: "firmware-images" }, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Version"), h("th", {}, "Size"), h("th", {}, "SHA-256"), h("th", {}, "Target"), h("th", {}, ""))), images)),
      h("div", { class: "page-head" }, h("h1", {}, "Campaigns")),
      h("div", { class: "card flush" }, h("table", { class: "table", id: "campaigns" }, h("thead", {}, h("tr", {}, h("th", {}, "Campaign"), h("th", {}, "Firmware"), h("th", {}, "Method"), h("th", {}, "State"), h("th", {}, "Progress"), h("th", {}, "Started"))), campaigns)),
    ),
  );
  loadImages();
  loadCampaigns();
  const refresh = perFrame(loadCampaigns);
  return onEvent((kind) => {
    if (kind === "CAMPAIGN") refresh();
  });
}
