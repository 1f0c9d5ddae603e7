// REST calls and the live event stream, with the optional bearer token.
//
// The token is asked once (on the first 401) and kept in sessionStorage, so
// it lives as long as the tab. Events are read with fetch() rather than
// EventSource because EventSource cannot send an Authorization header.

const TOKEN_KEY = "lwm2m.token";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

let askToken = async () => null;

export function setTokenPrompt(fn) {
  askToken = fn;
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

export async function api(method, url, { body, query, text, bytes } = {}) {
  let full = url;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== "") qs.append(k, String(v));
    }
    const s = qs.toString();
    if (s) full += (full.includes("?") ? "&" : "?") + s;
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    const init = { method, headers: headers() };
    if (bytes !== undefined) {
      init.headers["Content-Type"] = "application/octet-stream";
      init.body = bytes;
    } else if (text !== undefined) {
      init.headers["Content-Type"] = "text/plain";
      init.body = text;
    } else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(full, init);
    if (res.status === 401) {
      const token = await askToken(getToken() !== null);
      if (token === null) throw new ApiError(401, { message: "authentication required" });
      setToken(token);
      continue;
    }
    if (res.status === 204) return null;
    const ctype = res.headers.get("content-type") || "";
    const data = ctype.includes("json") ? await res.json() : await res.text();
    if (!res.ok) throw new ApiError(res.status, typeof data === "object" ? data : { message: data });
    return data;
  }
  throw new ApiError(401, { message: "authentication failed" });
}

// Path of a client operation; endpoint names may hold any URL character.
export function clientUrl(endpoint, path = "", suffix = "") {
  let url = `/api/clients/${encodeURIComponent(endpoint)}`;
  if (path) url += "/" + path.replace(/^\//, "");
  if (suffix) url += "/" + suffix;
  return url;
}

// One shared event stream for the page; listeners get (kind, data).
const listeners = new Set();
let statusListener = () => {};

export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function onStreamStatus(fn) {
  statusListener = fn;
}

function dispatch(kind, dataText) {
  let data;
  try {
    data = JSON.parse(dataText);
  } catch {
    data = { raw: dataText };
  }
  for (const fn of listeners) {
    try {
      fn(kind, data);
    } catch (err) {
      console.error("event listener failed", err);
    }
  }
}

// Reads one text/event-stream response to its end, calling fn(kind, dataText) per event
// and onOpen() once the server's first bytes (its "connected" comment) are in.
async function readEvents(res, fn, onOpen = () => {}) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let opened = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (!opened) {
      opened = true;
      onOpen();
    }
    buffer += value.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let kind = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) fn(kind, data.join("\n"));
    }
  }
}

export async function runEventStream() {
  let delay = 1000;
  for (;;) {
    try {
      const res = await fetch("/api/event", { headers: headers({ Accept: "text/event-stream" }) });
      if (res.status === 401) {
        const token = await askToken(getToken() !== null);
        if (token !== null) setToken(token);
        continue;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      statusListener(true);
      delay = 1000;
      await readEvents(res, dispatch);
    } catch (err) {
      console.warn("event stream interrupted", err);
    }
    statusListener(false);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

// A stream of one client's events (it carries COAPLOG too) until stop() is called;
// reconnects after interruptions. fn gets (kind, data); onStatus(true/false) tells
// when the stream is open (the server then traces this client's messages) or not.
export function streamClientEvents(endpoint, fn, onStatus = () => {}) {
  const abort = new AbortController();
  (async () => {
    let delay = 1000;
    while (!abort.signal.aborted) {
      try {
        const url = `/api/event?ep=${encodeURIComponent(endpoint)}`;
        const res = await fetch(url, { headers: headers({ Accept: "text/event-stream" }), signal: abort.signal });
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        delay = 1000;
        await readEvents(
          res,
          (kind, text) => {
            let data;
            try {
              data = JSON.parse(text);
            } catch {
              return;
            }
            fn(kind, data);
          },
          () => onStatus(true),
        );
      } catch (err) {
        if (abort.signal.aborted) return;
        console.warn("client event stream interrupted", err);
      }
      onStatus(false);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15000);
    }
  })();
  return () => abort.abort();
}
