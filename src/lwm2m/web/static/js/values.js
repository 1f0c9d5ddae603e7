// LwM2M values in the browser: reading the API's node JSON, typed form inputs.
//
// Node JSON (lwm2m.formats.jsonview): resources carry "value" or "instances"
// ({"0": v}), instances carry "resources" (a list), objects "instances" (a list).
// Opaque values are base64, Time values ISO 8601 strings, Objlnk "3:0".

// Every leaf value of a node as {"/3/0/1": value} (multiple resources: "/3/0/7/0").
export function leaves(node, out = {}) {
  if (!node || typeof node !== "object") return out;
  const kind = node.kind;
  if (kind === "object") {
    for (const inst of node.instances || []) leaves(inst, out);
  } else if (kind === "instance") {
    for (const res of node.resources || []) leaves(res, out);
  } else if (kind === "resource") {
    if ("value" in node) out[node.path] = node.value;
    else if (node.instances) {
      out[node.path] = { multiple: true, instances: node.instances };
    }
  } else if (kind === "resource_instance") {
    out[node.path] = node.value;
  }
  return out;
}

export function isNumericType(type) {
  return type === "Integer" || type === "Unsigned Integer" || type === "Float";
}

export function formatValue(value, spec) {
  if (value === undefined) return "";
  if (value === null) return "null";
  if (typeof value === "object" && value.multiple) {
    return Object.entries(value.instances)
      .map(([k, v]) => `[${k}] ${formatValue(v, spec)}`)
      .join("  ");
  }
  if (spec && spec.type === "Opaque" && typeof value === "string") {
    const bytes = atob(value);
    const hex = Array.from(bytes, (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
    return bytes.length > 32 ? `0x${hex.slice(0, 64)}… (${bytes.length} bytes)` : `0x${hex}`;
  }
  if (typeof value === "boolean") return value ? "true" : "false";
  return String(value);
}

function hexToBase64(text) {
  const clean = text.replace(/^0x/i, "").replace(/\s+/g, "");
  if (clean.length % 2 || /[^0-9a-f]/i.test(clean)) throw new Error("Opaque: give an even number of hex digits");
  let bin = "";
  for (let i = 0; i < clean.length; i += 2) bin += String.fromCharCode(parseInt(clean.slice(i, i + 2), 16));
  return btoa(bin);
}

// A form control for one value of `spec` (a resource spec from /api/objectspecs).
export function inputFor(spec, current) {
  const type = spec ? spec.type : "String";
  let input;
  if (type === "Boolean") {
    input = document.createElement("select");
    for (const v of ["true", "false"]) {
      const opt = document.createElement("option");
      opt.value = v;
      opt.textContent = v;
      input.appendChild(opt);
    }
    if (current === false) input.value = "false";
  } else {
    input = document.createElement("input");
    if (isNumericType(type)) {
      input.type = "number";
      input.step = type === "Float" ? "any" : "1";
      if (type === "Unsigned Integer") input.min = "0";
    } else if (type === "Time") {
      input.type = "datetime-local";
      input.step = "1";
    } else {
      input.type = "text";
    }
    if (type === "Opaque") input.placeholder = "hex bytes, e.g. 0a0b0c";
    if (type === "Objlnk") input.placeholder = "object:instance, e.g. 3:0";
    if (current !== undefined && current !== null && typeof current !== "object") {
      if (type === "Opaque") input.value = formatValue(current, spec).replace(/^0x/, "");
      else if (type === "Time") input.value = String(current).replace(/Z$/, "").slice(0, 19);
      else input.value = String(current);
    }
  }
  input.className = "value-input";
  input.dataset.type = type;
  return input;
}

// The JSON value of a control made by inputFor (throws Error with a message on bad input).
export function readInput(input) {
  const type = input.dataset.type;
  const raw = input.value;
  if (type === "Boolean") return raw === "true";
  if (type === "Integer" || type === "Unsigned Integer") {
    if (!/^-?\d+$/.test(raw.trim())) throw new Error(`${type}: whole number expected`);
    return Number(raw);
  }
  if (type === "Float") {
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n)) throw new Error("Float: number expected");
    return n;
  }
  if (type === "Opaque") return hexToBase64(raw);
  if (type === "Time") {
    if (!raw) throw new Error("Time: pick a date and time");
    return new Date(raw + "Z").toISOString().replace(/\.\d{3}Z$/, "Z");
  }
  return raw;
}
