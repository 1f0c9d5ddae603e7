// What every view shares: the registered clients and recent events, kept live by the event stream.

import { onEvent, onStreamStatus } from "./api.js";
import { toast } from "./dom.js";


export const state = {
  clients: new Map(), // endpoint -> client JSON, of the clients on screen only (never the fleet)
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
  if (on) loadClients();
});

onEvent((kind, data) => {
  state.events.push({ kind, data, at: new Date() });
  if (state.events.length > MAX_EVENTS) state.events.shift();
  const ep = data.endpoint || data.ep || (data.registration && data.registration.endpoint);
  // Only clients a view shows are kept up to date: the fleet may be 100,000 strong.
  if (kind === "REGISTRATION") {
    if (state.clients.has(data.endpoint)) state.clients.set(data.endpoint, data);
  } else if (kind === "UPDATED") {
    if (state.clients.has(data.registration.endpoint)) state.clients.set(data.registration.endpoint, data.registration);
  }
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

// After a (re)connection events may have been missed: the current view reloads what it shows.
export function loadClients() {
  if (state.onChange) state.onChange("RELOAD", {}, null);
}
