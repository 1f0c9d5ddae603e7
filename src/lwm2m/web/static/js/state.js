// What every view shares: the registered clients and recent events, kept live by the event stream.

import { api, onEvent, onStreamStatus } from "./api.js";
import { toast } from "./dom.js";


export const state = {
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

export async function loadClients() {
  const list = await api("GET", "/api/clients");
  state.clients = new Map(list.map((c) => [c.endpoint, c]));
  if (state.onChange) state.onChange("RELOAD", {}, null);
}
