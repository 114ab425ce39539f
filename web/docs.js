// Renders /openapi.json as a browsable page: operations grouped by tag, with their
// parameters, request bodies and responses. No dependencies.
"use strict";

const METHODS = ["get", "post", "put", "patch", "delete"];
let spec;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function resolve(schema) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 20) {
    schema = schema.$ref.replace(/^#\//, "").split("/").reduce((node, key) => node?.[key], spec);
  }
  return schema || {};
}

function refName(schema) { return schema?.$ref ? schema.$ref.split("/").pop() : null; }

function typeOf(schema) {
  const name = refName(schema);
  if (name) return name;
  schema = resolve(schema);
  if (schema.allOf) return schema.allOf.map(typeOf).join(" & ");
  if (schema.oneOf) return schema.oneOf.map(typeOf).join(" | ");
  if (schema.type === "array") return typeOf(schema.items || {}) + "[]";
  let type = schema.type || "any";
  if (schema.enum) type += " (" + schema.enum.join(", ") + ")";
  if (schema.format) type += " <" + schema.format + ">";
  return type;
}

// A schema as an indented outline: one line per property, nested objects expanded.
function outline(schema, depth = 0, seen = new Set()) {
  const lines = [];
  const name = refName(schema);
  if (name) {
    if (seen.has(name) || depth > 3) return [];
    seen = new Set(seen).add(name);
  }
  schema = resolve(schema);
  if (schema.allOf) { for (const part of schema.allOf) lines.push(...outline(part, depth, seen)); return lines; }
  if (schema.type === "array" && schema.items) return outline(schema.items, depth, seen);
  const properties = schema.properties || {};
  const required = new Set(schema.required || []);
  for (const [key, property] of Object.entries(properties)) {
    const resolved = resolve(property);
    const notes = [];
    if (required.has(key)) notes.push("required");
    if (resolved.default !== undefined) notes.push("default " + JSON.stringify(resolved.default));
    if (resolved.minimum !== undefined || resolved.maximum !== undefined) notes.push(`${resolved.minimum ?? "…"} to ${resolved.maximum ?? "…"}`);
    if (resolved.nullable) notes.push("nullable");
    if (resolved.description) notes.push(resolved.description);
    lines.push({ depth, key, type: typeOf(property), notes: notes.join("; ") });
    const nested = resolved.type === "array" ? resolved.items : property;
    if (nested && (resolve(nested).properties || resolve(nested).allOf)) lines.push(...outline(nested, depth + 1, seen));
  }
  return lines;
}

function schemaBlock(schema) {
  const lines = outline(schema);
  const pre = el("pre", { class: "schema" });
  if (!lines.length) { pre.append(el("span", { class: "type" }, typeOf(schema))); return pre; }
  for (const line of lines) {
    pre.append("  ".repeat(line.depth), el("span", { class: "key" }, line.key), ": ", el("span", { class: "type" }, line.type));
    if (line.notes) pre.append("  ", el("span", { class: "note" }, "— " + line.notes));
    pre.append("\n");
  }
  return pre;
}

function operationView(path, method, op, shared) {
  const id = `${method}-${path}`.replace(/[^a-zA-Z0-9]+/g, "-");
  const body = el("div", { class: "body" });
  if (op.description) body.append(el("p", {}, op.description));
  const parameters = [...(shared || []), ...(op.parameters || [])].map(resolve);
  if (parameters.length) {
    body.append(el("h4", {}, "Parameters"), el("table", {},
      el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "")),
      parameters.map((p) => el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in), el("td", {}, typeOf(p.schema || {})),
        el("td", {}, [p.required ? "required. " : "", p.description || ""].join(""))))));
  }
  if (op.requestBody) {
    const content = op.requestBody.content || {};
    for (const [type, media] of Object.entries(content)) {
      body.append(el("h4", {}, `Request body (${type})`), schemaBlock(media.schema || {}));
    }
  }
  body.append(el("h4", {}, "Responses"));
  for (const [status, response] of Object.entries(op.responses || {})) {
    const r = resolve(response);
    const row = el("div", {}, el("strong", {}, status), " ", r.description || "");
    body.append(row);
    for (const [type, media] of Object.entries(r.content || {})) {
      if (media.schema && (refName(media.schema) || resolve(media.schema).properties || resolve(media.schema).oneOf)) {
        row.append(el("div", { class: "muted" }, type + ": " + typeOf(media.schema)));
        if (status.startsWith("2")) row.append(schemaBlock(media.schema));
      }
    }
  }
  return el("details", { class: "op panel", id },
    el("summary", {}, el("span", { class: `method ${method}` }, method.toUpperCase()), el("span", { class: "path" }, path),
      el("span", { class: "summary" }, op.summary || "")),
    body);
}

function render() {
  document.title = `${spec.info.title} API`;
  document.getElementById("version").textContent = `OpenAPI ${spec.openapi} · ${spec.info.version}`;
  const content = document.getElementById("content"), toc = document.getElementById("toc");
  content.replaceChildren(el("p", {}, spec.info.description || ""));
  toc.replaceChildren();
  const groups = new Map((spec.tags || []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of METHODS) {
      if (!item[method]) continue;
      const tag = (item[method].tags || ["Other"])[0];
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push([path, method, item[method], item.parameters]);
    }
  }
  for (const [tag, operations] of groups) {
    if (!operations.length) continue;
    content.append(el("h2", { id: "tag-" + tag }, tag));
    toc.append(el("h3", {}, tag));
    for (const [path, method, op, shared] of operations) {
      const view = operationView(path, method, op, shared);
      content.append(view);
      const link = el("a", { href: "#" + view.id }, `${method.toUpperCase()} ${path}`);
      link.addEventListener("click", () => { view.open = true; });
      toc.append(link);
    }
  }
  const target = location.hash && document.getElementById(location.hash.slice(1));
  if (target && target.tagName === "DETAILS") { target.open = true; target.scrollIntoView(); }
}

fetch("/openapi.json")
  .then((response) => { if (!response.ok) throw new Error(`HTTP ${response.status}`); return response.json(); })
  .then((document_) => { spec = document_; render(); })
  .catch((error) => {
    document.getElementById("content").replaceChildren(el("p", { class: "error" }, "Cannot load /openapi.json: " + error.message));
  });
