// The lwm2m web UI: clients, one client's objects, events, security, bootstrap.
// Plain ES modules, no build step; every view is rebuilt from the REST API and
// kept live by the shared event stream.

import { api, runEventStream, setTokenPrompt } from "./api.js";
import { errorText, h, modal, toast } from "./dom.js";
import { state } from "./state.js";
import { renderBootstrapView } from "./views/bootstrap.js";
import { renderCampaignView } from "./views/campaigns.js";
import { renderClientView } from "./views/client.js";
import { renderClientsView } from "./views/clients.js";
import { renderEventsView } from "./views/events.js";
import { renderFirmwareView } from "./views/firmware.js";
import { renderSecurityView } from "./views/security.js";

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
  else if (parts[0] === "firmware") (tab = "firmware"), (cleanup = renderFirmwareView());
  else if (parts[0] === "campaigns" && parts[1]) (tab = "firmware"), (cleanup = renderCampaignView(decodeURIComponent(parts[1])));
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
    document.querySelector('#nav a[data-tab="firmware"]').hidden = !info.lwm2mServer;
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
