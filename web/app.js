// Easel's page: a form that submits jobs, follows their events and shows a gallery of
// finished jobs. Plain JavaScript, no build step; it only uses Easel's public API.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "easel.apiKey";
const SEED_STORAGE = "easel.seedLocked";

// Used when the server has no /v1/defaults or /v1/samplers (or they fail).
const FALLBACK_DEFAULTS = { width: 512, height: 512, steps: 20, cfg_scale: 7, sampler: "Euler a", negative_prompt: "", batch_size: 1 };
const FALLBACK_SAMPLERS = ["Euler a", "Euler", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE", "DDIM", "PNDM", "LMS",
  "LMS Karras", "Heun", "DPM2", "DPM2 a", "UniPC", "DEIS"];

const state = {
  job: null,            // id of the job being followed
  abort: null,          // AbortController of its event stream
  seedLocked: localStorage.getItem(SEED_STORAGE) === "true",
  galleryOffset: 0,
  galleryIds: new Set(),
  objectURLs: new Map(), // image URL -> blob URL, so images load once with the key
};

// ---------------------------------------------------------------- API

class APIError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }

function headers(extra = {}) {
  const h = { ...extra };
  const key = apiKey();
  if (key) h["Authorization"] = /^(bearer|basic) /i.test(key) ? key : "Bearer " + key;
  return h;
}

async function errorFrom(response) {
  let code = "http_" + response.status, message = response.statusText || "request failed", field = null;
  try {
    const body = await response.json();
    const error = body.error || body;
    if (typeof error === "string") message = error;
    else {
      code = error.code || code;
      message = error.message || error.detail || message;
      field = error.field || error.param || null;
    }
  } catch (_) { /* not JSON */ }
  if (response.status === 401 || response.status === 403) {
    message = (apiKey() ? "The server refused the API key: " : "This server needs an API key (click “API key” at the top right): ") + message;
  }
  return new APIError(response.status, code, message, field);
}

async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new APIError(0, "unreachable", "Cannot reach the Easel server (" + error.message + ").");
  }
  if (!response.ok) throw await errorFrom(response);
  return response.status === 204 ? null : response.json();
}

// GET that answers null when the route does not exist (yet) or fails.
async function optional(path) {
  try { return await api("GET", path); } catch (_) { return null; }
}

// An image of the API as a blob URL: <img src> cannot send the Authorization header.
async function imageURL(path) {
  if (state.objectURLs.has(path)) return state.objectURLs.get(path);
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) throw await errorFrom(response);
  const url = URL.createObjectURL(await response.blob());
  state.objectURLs.set(path, url);
  return url;
}

// Server-Sent Events over fetch(), so the request can carry the API key.
async function followEvents(jobId, onEvent, signal) {
  const response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, {
    headers: headers({ Accept: "text/event-stream" }), signal,
  });
  if (!response.ok) throw await errorFrom(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(type, JSON.parse(data.join("\n")));
    }
  }
}

// ---------------------------------------------------------------- form

const fields = {
  prompt: $("prompt"), negative: $("negative-prompt"), model: $("model"), width: $("width"), height: $("height"),
  steps: $("steps"), cfg: $("cfg"), sampler: $("sampler"), seed: $("seed"), batch: $("batch"),
};

function showError(error) {
  const box = $("error");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  let text = error.message || String(error);
  if (error.field) text += ` (field: ${error.field})`;
  box.textContent = text;
  box.hidden = false;
  if (error.field) {
    const map = { negative_prompt: "negative", cfg_scale: "cfg", batch_size: "batch" };
    const input = fields[map[error.field] || error.field];
    if (input) input.focus();
  }
}

// Icons drawn inline: emoji need fonts that a server's browser may lack.
const ICONS = {
  dice: '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" aria-hidden="true"><rect x="3" y="3" width="18" height="18" rx="4"/><circle cx="8" cy="8" r="1.3" fill="currentColor"/><circle cx="16" cy="8" r="1.3" fill="currentColor"/><circle cx="12" cy="12" r="1.3" fill="currentColor"/><circle cx="8" cy="16" r="1.3" fill="currentColor"/><circle cx="16" cy="16" r="1.3" fill="currentColor"/></svg>',
  lock: '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" aria-hidden="true"><rect x="4" y="11" width="16" height="10" rx="2"/><path d="M8 11V7a4 4 0 0 1 8 0v4"/></svg>',
};

function setSeedLocked(locked) {
  state.seedLocked = locked;
  localStorage.setItem(SEED_STORAGE, String(locked));
  const button = $("seed-mode");
  button.innerHTML = locked ? ICONS.lock : ICONS.dice;
  button.setAttribute("aria-label", locked ? "seed locked" : "random seed");
  button.setAttribute("aria-pressed", String(locked));
  button.title = locked ? "Seed locked: every generation uses this seed (click for random seeds)"
    : "Random seed for each image (click to lock the seed)";
  fields.seed.placeholder = locked ? "seed" : "random";
}

function requestBody() {
  const number = (input) => input.value === "" ? undefined : Number(input.value);
  const body = {
    prompt: fields.prompt.value,
    negative_prompt: fields.negative.value,
    width: number(fields.width), height: number(fields.height),
    steps: number(fields.steps), cfg_scale: number(fields.cfg),
    sampler: fields.sampler.value || undefined,
    batch_size: number(fields.batch),
    model: fields.model.value || undefined,
  };
  if (state.seedLocked && fields.seed.value !== "") body.seed = Number(fields.seed.value);
  return body;
}

function applySettings(p) {
  if (!p) return;
  if (p.prompt !== undefined) fields.prompt.value = p.prompt;
  if (p.negative_prompt !== undefined) fields.negative.value = p.negative_prompt;
  if (p.width) fields.width.value = p.width;
  if (p.height) fields.height.value = p.height;
  if (p.steps) fields.steps.value = p.steps;
  if (p.cfg_scale !== undefined) fields.cfg.value = p.cfg_scale;
  if (p.sampler) selectValue(fields.sampler, p.sampler);
  if (p.batch_size) fields.batch.value = p.batch_size;
  if (p.model) selectValue(fields.model, p.model);
}

function selectValue(select, value) {
  if (![...select.options].some((o) => o.value === value)) select.add(new Option(value, value));
  select.value = value;
}

// ---------------------------------------------------------------- generation

function setBusy(busy) {
  $("generate").disabled = busy;
  $("cancel").disabled = !busy;
}

function setProgress(step, total, eta, label) {
  const box = $("progress-box"), bar = $("progress-bar");
  box.hidden = false;
  const percent = total > 0 ? Math.min(100, Math.round((100 * step) / total)) : 0;
  bar.style.width = percent + "%";
  bar.setAttribute("aria-valuenow", String(percent));
  bar.classList.toggle("done", label === "done");
  let text = label && label !== "done" ? label : `Step ${step} of ${total}`;
  if (label === "done") text = `Done: ${total} steps`;
  if (eta !== null && eta !== undefined && label !== "done") text += ` · about ${formatSeconds(eta)} left`;
  $("progress-text").textContent = text;
}

function formatSeconds(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  return seconds < 60 ? `${seconds} s` : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

function showPreview(preview) {
  const current = $("current");
  let img = current.querySelector("img.preview");
  if (!img) {
    current.replaceChildren();
    img = document.createElement("img");
    img.className = "preview";
    img.alt = "preview";
    current.append(img);
  }
  img.src = `data:image/${preview.format};base64,${preview.base64}`;
  if (preview.width) img.width = Math.max(preview.width, Number(fields.width.value) || preview.width);
}

async function showResult(job) {
  const current = $("current");
  const images = await Promise.all(job.images.map(async (image) => {
    const img = document.createElement("img");
    img.className = "result";
    img.alt = job.parameters.prompt;
    img.dataset.seed = image.seed;
    img.width = image.width;
    img.height = image.height;
    img.src = await imageURL(image.url);
    await img.decode().catch(() => {});
    return img;
  }));
  current.replaceChildren(...images);
  // The seed field shows the seed just used, so it can be locked and reused.
  if (job.images.length) fields.seed.value = job.images[0].seed;
}

async function generate() {
  if (state.job) return;
  showError(null);
  if (!fields.prompt.value.trim()) {
    showError(new APIError(0, "invalid", "Type a prompt first.", "prompt"));
    return;
  }
  setBusy(true);
  setProgress(0, Number(fields.steps.value) || 0, null, "Submitting…");
  let job;
  try {
    job = await api("POST", "/v1/jobs", requestBody());
  } catch (error) {
    setBusy(false);
    $("progress-box").hidden = true;
    showError(error);
    return;
  }
  state.job = job.id;
  state.abort = new AbortController();
  setProgress(0, job.total_steps, null, job.queue_position ? `Queued (position ${job.queue_position})` : "Starting…");
  let finished = null;
  try {
    await followEvents(job.id, (type, event) => {
      if (type === "progress" || type === "started") {
        setProgress(event.step, event.total_steps, event.eta_seconds, null);
        if (event.preview) showPreview(event.preview);
      } else if (type === "queued") {
        setProgress(0, event.total_steps, event.eta_seconds, `Queued (position ${event.queue_position ?? "?"})`);
      } else if (["succeeded", "failed", "cancelled"].includes(type)) {
        finished = event.job;
      }
    }, state.abort.signal);
    if (!finished) finished = await api("GET", `/v1/jobs/${encodeURIComponent(job.id)}`);
  } catch (error) {
    if (error.name !== "AbortError") showError(error);
  }
  state.job = null;
  state.abort = null;
  setBusy(false);
  if (!finished) return;
  if (finished.state === "succeeded") {
    setProgress(finished.total_steps, finished.total_steps, null, "done");
    try {
      await showResult(finished);
      addToGallery(finished, true);
    } catch (error) {
      showError(error);
    }
  } else if (finished.state === "cancelled") {
    setProgress(finished.step, finished.total_steps, null, `Cancelled at step ${finished.step} of ${finished.total_steps}`);
  } else if (finished.state === "failed") {
    setProgress(finished.step, finished.total_steps, null, "Failed");
    showError(new APIError(0, finished.error?.code, "The job failed: " + (finished.error?.message || "no reason given")));
  }
}

async function cancel() {
  if (!state.job) return;
  $("cancel").disabled = true;
  try {
    await api("POST", `/v1/jobs/${encodeURIComponent(state.job)}/cancel`);
  } catch (error) {
    showError(error);
    $("cancel").disabled = false;
  }
}

// ---------------------------------------------------------------- gallery

const GALLERY_PAGE = 24;

function describe(p) {
  return [`${p.width}×${p.height}`, `${p.steps} steps`, `CFG ${p.cfg_scale}`, p.sampler, `seed ${p.seed}`, p.model]
    .filter(Boolean).join(" · ");
}

function addToGallery(job, first) {
  if (state.galleryIds.has(job.id) || !job.images?.length) return;
  state.galleryIds.add(job.id);
  const card = document.createElement("article");
  card.className = "card";
  card.dataset.job = job.id;
  const images = document.createElement("div");
  images.className = "images";
  for (const image of job.images) {
    const link = document.createElement("a");
    link.target = "_blank";
    link.rel = "noopener";
    const img = document.createElement("img");
    img.alt = job.parameters.prompt;
    img.loading = "lazy";
    img.dataset.seed = image.seed;
    img.width = image.width;
    img.height = image.height;
    imageURL(image.url).then((url) => { img.src = url; link.href = url; }).catch(() => { img.alt = "image unavailable"; });
    link.append(img);
    images.append(link);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  const prompt = document.createElement("div");
  prompt.className = "prompt";
  prompt.textContent = job.parameters.prompt;
  meta.append(prompt);
  if (job.parameters.negative_prompt) {
    const negative = document.createElement("div");
    negative.className = "params";
    negative.textContent = "Negative: " + job.parameters.negative_prompt;
    meta.append(negative);
  }
  const params = document.createElement("div");
  params.className = "params";
  params.textContent = describe(job.parameters) + (job.finished_at ? " · " + new Date(job.finished_at).toLocaleString() : "");
  const reuse = document.createElement("button");
  reuse.type = "button";
  reuse.className = "secondary reuse";
  reuse.textContent = "Reuse settings";
  reuse.addEventListener("click", () => {
    applySettings(job.parameters);
    fields.seed.value = job.parameters.seed;
    setSeedLocked(true);
    window.scrollTo({ top: 0, behavior: "smooth" });
    fields.prompt.focus();
  });
  meta.append(params, reuse);
  card.append(images, meta);
  const gallery = $("gallery");
  if (first) gallery.prepend(card); else gallery.append(card);
}

async function loadGallery(reset) {
  if (reset) {
    state.galleryOffset = 0;
    state.galleryIds.clear();
    $("gallery").replaceChildren();
  }
  try {
    const list = await api("GET", `/v1/jobs?state=succeeded&limit=${GALLERY_PAGE}&offset=${state.galleryOffset}`);
    for (const job of list.data) addToGallery(job, false);
    state.galleryOffset += list.data.length;
    $("gallery-more").hidden = list.data.length < GALLERY_PAGE;
  } catch (error) {
    showError(error);
  }
}

// ---------------------------------------------------------------- start-up

async function loadChoices() {
  const [models, defaults, samplers] = await Promise.all([
    api("GET", "/v1/models").catch((error) => { showError(error); return null; }),
    optional("/v1/defaults"),
    optional("/v1/samplers"),
  ]);

  const names = samplerNames(samplers);
  fields.sampler.replaceChildren(...names.map((name) => new Option(name, name)));

  if (models) {
    const usable = models.data.filter((m) => !m.problem);
    fields.model.replaceChildren(new Option("server default" + (models.default_model ? ` (${models.default_model})` : ""), ""),
      ...usable.map((m) => new Option(m.id + (m.loaded ? " ●" : ""), m.id)));
  }
  const d = { ...FALLBACK_DEFAULTS, ...defaultsFrom(defaults) };
  applySettings({ ...d, model: undefined, prompt: undefined });
  if (d.model && [...fields.model.options].some((o) => o.value === d.model)) fields.model.value = d.model;
}

function samplerNames(answer) {
  const list = Array.isArray(answer) ? answer : answer?.data || answer?.samplers;
  const names = (list || []).filter((s) => s && s.available !== false)
    .map((s) => typeof s === "string" ? s : s.name || s.id).filter(Boolean);
  return names.length ? names : FALLBACK_SAMPLERS;
}

function defaultsFrom(answer) {
  const source = answer?.defaults || answer?.generation || answer || {};
  const keys = ["width", "height", "steps", "cfg_scale", "sampler", "negative_prompt", "batch_size", "model"];
  const result = {};
  for (const key of keys) if (source[key] !== undefined && source[key] !== null) result[key] = source[key];
  if (!result.model && source.default_model) result.model = source.default_model;
  return result;
}

async function checkHealth() {
  try {
    const response = await fetch("/health");
    const body = await response.json();
    $("server-status").textContent = body.status === "ok" ? `ready · ${body.version || ""}` : `${body.status}: ${body.reason || ""}`;
  } catch (_) {
    $("server-status").textContent = "server unreachable";
  }
}

function setUpKey() {
  const panel = $("key-panel"), input = $("api-key");
  const label = () => { $("key-button").textContent = apiKey() ? "API key ✓" : "API key"; };
  label();
  $("key-button").addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    if (!panel.hidden) { input.value = apiKey(); input.focus(); }
  });
  $("key-save").addEventListener("click", () => {
    localStorage.setItem(KEY_STORAGE, input.value.trim());
    panel.hidden = true;
    label();
    restart();
  });
  $("key-clear").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    input.value = "";
    label();
    restart();
  });
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") $("key-save").click(); });
}

function restart() {
  showError(null);
  for (const url of state.objectURLs.values()) URL.revokeObjectURL(url);
  state.objectURLs.clear();
  loadChoices();
  loadGallery(true);
}

function start() {
  setUpKey();
  setSeedLocked(state.seedLocked);
  $("seed-mode").addEventListener("click", () => setSeedLocked(!state.seedLocked));
  fields.seed.addEventListener("input", () => { if (fields.seed.value !== "" && !state.seedLocked) setSeedLocked(true); });
  $("generate-form").addEventListener("submit", (e) => { e.preventDefault(); generate(); });
  $("cancel").addEventListener("click", cancel);
  $("gallery-refresh").addEventListener("click", () => loadGallery(true));
  $("gallery-more").addEventListener("click", () => loadGallery(false));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); }
    if (e.key === "Escape" && state.job) cancel();
  });
  if (/Mac|iPhone|iPad/.test(navigator.platform)) document.querySelector("#generate kbd").textContent = "⌘";
  checkHealth();
  loadChoices();
  loadGallery(true);
}

start();
