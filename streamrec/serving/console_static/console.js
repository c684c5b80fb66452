// The streamrec console: plain JavaScript over the server's JSON endpoints
// (no build step, no library, nothing fetched from anywhere but the server).
"use strict";

const $ = (selector) => document.querySelector(selector);
const keyInput = $("#api-key");
keyInput.value = localStorage.getItem("streamrec-key") || "";
keyInput.addEventListener("change", () => localStorage.setItem("streamrec-key", keyInput.value));

async function call(path, options = {}) {
  const key = keyInput.value ? { "X-API-Key": keyInput.value } : {};
  const headers = { "X-Streamrec-Console": "1", ...key, ...(options.headers || {}) };
  const answer = await fetch(path, { ...options, headers });
  if (!answer.ok) {
    const body = await answer.json().catch(() => ({}));
    throw new Error(`${answer.status}: ${reason(body.detail) || answer.statusText}`);
  }
  return answer;
}

// FastAPI's 422 detail is a list of {loc, msg}: each said as "field: why".
const reason = (detail) =>
  Array.isArray(detail) ? detail.map((d) => [(d.loc || []).slice(1).join("."), d.msg].filter(Boolean).join(": ")).join("; ") : detail;
const json = async (path, options) => (await call(path, options)).json();

function showError(error) {
  const box = $("#error");
  box.hidden = !error;
  box.textContent = error ? String(error.message || error) : "";
}

function cell(row, text) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "–" : String(text);
  return td;
}

function fill(table, rows, columns, empty = "none") {
  const body = table.tBodies[0];
  body.replaceChildren();
  if (!rows.length) cell(body.insertRow(), empty).className = "none";
  for (const values of rows) {
    const row = body.insertRow();
    columns(values).forEach((value) => (value instanceof Node ? row.insertCell().append(value) : cell(row, value)));
  }
}

const fixed = (value, digits = 1) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));
const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "–");

// --- overview ---------------------------------------------------------------

function line(svg, values, cls, top) {
  const n = values.length;
  const points = values.map((v, i) => `${(600 * i) / Math.max(n - 1, 1)},${160 - (150 * (v || 0)) / top}`);
  const shape = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  shape.setAttribute("points", points.join(" "));
  shape.setAttribute("class", cls);
  svg.append(shape);
}

function chart(svg, series) {
  svg.replaceChildren();
  const top = Math.max(1, ...series.flatMap(([values]) => values.map((v) => v || 0)));
  series.forEach(([values, cls]) => line(svg, values, cls, top));
  const label = document.createElementNS("http://www.w3.org/2000/svg", "text");
  label.setAttribute("x", 4);
  label.setAttribute("y", 12);
  label.textContent = `max ${Math.round(top).toLocaleString()}`;
  svg.append(label);
}

async function overview() {
  const view = await json("/console/api/overview");
  const points = view.points;
  const last = points[points.length - 1] || {};
  $("#events-per-s").textContent = fixed(last.events_per_s, 0);
  $("#publishes-per-s").textContent = fixed(last.publishes_per_s, 0);
  $("#freshness").textContent = last.p99_ms == null ? "none published" : `${fixed(last.p50_ms)} / ${fixed(last.p99_ms)} ms`;
  $("#lag").textContent = last.lag ?? "–";
  $("#dead-letters").textContent = last.dead_letters ?? "–";
  $("#model-version").textContent = view.model_version || "none yet (live popularity)";
  $("#backlog").textContent = view.publisher_backlog ?? "–";
  $("#publish-errors").textContent = view.publisher_errors ?? "–";
  chart($("#chart-rates"), [[points.map((p) => p.events_per_s), "events"], [points.map((p) => p.publishes_per_s), "publishes"]]);
  chart($("#chart-p99"), [[points.map((p) => p.p99_ms), "p99"]]);
  fill($("#lag-table"), Object.entries(view.lag_by_partition || {}), ([partition, lag]) => [partition, lag], "not known yet");
  fill($("#dead-table"), Object.entries(view.dead_letters_by_reason || {}), ([reason, n]) => [reason, n]);
  fill($("#workers-table"), view.workers || [], workerRow, "none found yet");
  fill($("#servers-table"), view.servers || [], (s) => [s.server, s.version || "none yet", `${fixed(s.seen_s_ago, 0)} s ago`], "none heard from yet");
}

const served = (publisher) => (publisher ? publisher.model_version || "live popularity" : "not publishing");

function workerRow(worker) {
  if (worker.error) return [worker.url, worker.error, "", "", "", "", "", ""];
  const p = worker.publisher || {};
  return [worker.url + (worker.ready ? "" : " (restoring)"), worker.partitions.join(" "), worker.lag,
    served(worker.publisher), p.backlog_users, p.published, fixed(p.p99_ms), p.errors];
}

// --- models -----------------------------------------------------------------

function indexCell(index) {
  const cell = document.createElement("span");
  cell.textContent = index ? index.label : "as configured";
  const m = index && index.measured;
  if (m) {
    const measured = `recall@${m.k} ${fixed(m.recall, 3)}, p99 ${fixed(m.p99_ms, 2)} ms, ${fixed(m.bytes_per_item, 0)} B/item`;
    cell.append(document.createElement("br"), Object.assign(document.createElement("small"), { textContent: measured }));
  }
  return cell;
}

function blendCell(blend) {
  const halfLife = blend.recency_half_life ? `, half-life ${blend.recency_half_life}` : "";
  return `${blend.source_name || blend.source} x ${blend.weight}${halfLife}`;
}

async function models() {
  const [view, live] = await Promise.all([json("/console/api/models"), json("/console/api/overview")]);
  const versions = new Set((live.workers || []).filter((w) => !w.error).map((w) => served(w.publisher)));
  $("#worker-versions").textContent = [...versions].join(", ") || "none found";
  const byServer = new Set((live.servers || []).map((s) => s.version || "none yet"));
  $("#server-versions").textContent = [...byServer].join(", ") || "none heard from";
  $("#serving-version").textContent = view.serving || "none";
  $("#current-version").textContent = view.current || "none";
  fill($("#versions"), view.versions, (v) => [
    v.version, when(v.created), v.kind, v.window ? v.window.events.toLocaleString() : "–",
    fixed(v["recall@20"], 4), fixed(v["popularity_recall@20"], 4), fixed(v["ndcg@20"], 4),
    v.gate.passed ? "passed" : v.gate.forced ? "forced" : "held back",
    indexCell(v.index),
    v.blend && v.blend.neighbours ? blendCell(v.blend) : "towers only",
  ]);
  [...$("#versions").tBodies[0].rows].forEach((row, i) => row.classList.toggle("serving", view.versions[i].version === view.serving));
}

$("#rollback").addEventListener("click", async () => {
  try {
    const done = await json("/console/api/rollback", { method: "POST" });
    $("#rollback-result").textContent = `current is now ${done.current}`;
    await models();
  } catch (error) {
    $("#rollback-result").textContent = `not rolled back: ${error.message}`;
  }
});

// --- playground ---------------------------------------------------------------

function itemLink(item) {
  const link = document.createElement("a");
  link.className = "item";
  link.textContent = item.title ? `${item.title} (${item.item_id})` : item.item_id;
  link.addEventListener("click", () => similar(item).catch(showError));
  return link;
}

const placed = () => ($("#placement").value.trim() ? `&placement=${encodeURIComponent($("#placement").value.trim())}` : "");

async function recommend() {
  const user = $("#user-id").value.trim();
  const diversity = $("#diversity").value;
  const answer = await json(`/recommendations/${encodeURIComponent(user)}?k=10&explain=true&details=true&diversity=${diversity}${placed()}`);
  const variant = answer.variant ? `, variant ${answer.variant}` : "";
  $("#answer-source").textContent = `served by ${answer.model_version}${variant}; recommendation id ${answer.recommendation_id}`;
  fill($("#recommendations"), answer.items, (item) => [itemLink(item), item.category, fixed(item.score, 3), item.source, item.because]);
  try {
    const features = await json(`/console/api/users/${encodeURIComponent(user)}`);
    $("#features").textContent = "";
    const list = document.createElement("dl");
    for (const [name, value] of Object.entries(features)) {
      list.append(Object.assign(document.createElement("dt"), { textContent: name }));
      list.append(Object.assign(document.createElement("dd"), { textContent: typeof value === "object" ? JSON.stringify(value) : value }));
    }
    $("#features").append(list);
  } catch (error) {
    $("#features").textContent = error.message.startsWith("404") ? "an unknown user: the cold-start answer"
      : `features need an admin key (${error.message})`;
  }
}

async function search() {
  const user = $("#user-id").value.trim();
  const personal = $("#search-personal").checked && user ? `&user_id=${encodeURIComponent(user)}` : "";
  const answer = await json(`/search?q=${encodeURIComponent($("#query").value)}&k=10&details=true${personal}${placed()}`);
  fill($("#search-results"), answer.items, (item) => [itemLink(item), item.category, fixed(item.score, 3)]);
}

async function similar(item) {
  const id = encodeURIComponent(item.item_id);
  const [near, together] = await Promise.all([
    json(`/items/${id}/similar?k=10&details=true${placed()}`),
    json(`/items/${id}/bought-together?k=10&details=true${placed()}`),
  ]);
  $("#similar-title").hidden = $("#together-title").hidden = false;
  $("#similar-title").textContent = `Similar to ${item.title || item.item_id}`;
  $("#together-title").textContent = `Bought with ${item.title || item.item_id}`;
  fill($("#similar"), near.items, (found) => [itemLink(found), found.category, fixed(found.score, 3)]);
  fill($("#together"), together.items,
    (found) => [itemLink(found), found.category, found.source.replace("_", " "), fixed(found.score, 3)]);
}

$("#diversity").addEventListener("input", () => ($("#diversity-value").textContent = $("#diversity").value));
$("#user-form").addEventListener("submit", (event) => { event.preventDefault(); recommend().then(() => showError(null), showError); });
$("#search-form").addEventListener("submit", (event) => { event.preventDefault(); search().then(() => showError(null), showError); });

// --- rules ------------------------------------------------------------------

const listOf = (text) => text.split(",").map((part) => part.trim()).filter(Boolean);
const numberOf = (input) => (input.value === "" ? undefined : Number(input.value));
const BOOST_KINDS = [["category", "category is"], ["attribute", "attribute name=value"], ["new", "added within days"]];

function boostRow(boost = {}) {
  const row = Object.assign(document.createElement("div"), { className: "row boost" });
  const kind = document.createElement("select");
  BOOST_KINDS.forEach(([value, text]) => kind.append(new Option(text, value)));
  const value = Object.assign(document.createElement("input"), { className: "boost-value", required: true });
  const weight = Object.assign(document.createElement("input"),
    { className: "boost-weight", type: "number", min: -1, max: 1, step: "any", required: true, value: boost.weight ?? 0.5 });
  const remove = Object.assign(document.createElement("button"), { type: "button", textContent: "remove" });
  remove.addEventListener("click", () => row.remove());
  if (boost.attribute) [kind.value, value.value] = ["attribute", `${boost.attribute}=${boost.value}`];
  else if (boost.new_within_days) [kind.value, value.value] = ["new", boost.new_within_days];
  else value.value = boost.category || "";
  row.append(kind, value, "weight", weight, remove);
  $("#boosts").append(row);
}

function boostOf(row) {
  const kind = row.querySelector("select").value;
  const value = row.querySelector(".boost-value").value.trim();
  const weight = Number(row.querySelector(".boost-weight").value);
  if (kind === "category") return { category: value, weight };
  if (kind === "new") return { new_within_days: Number(value), weight };
  const [name, ...rest] = value.split("=");
  return { attribute: name.trim(), value: rest.join("=").trim(), weight };
}

function ruleOf() {
  const rule = {
    include_categories: listOf($("#rule-include").value),
    exclude_categories: listOf($("#rule-exclude").value),
    exclude_items: listOf($("#rule-exclude-items").value),
    min_price: numberOf($("#rule-min-price")),
    max_price: numberOf($("#rule-max-price")),
    max_age_days: numberOf($("#rule-max-age")),
    boosts: [...document.querySelectorAll("#boosts .boost")].map(boostOf),
    promoted: listOf($("#rule-promoted").value),
    promoted_slot: Math.max(0, Number($("#rule-slot").value || 1) - 1),
  };
  return Object.fromEntries(Object.entries(rule).filter(([, value]) => value !== undefined));
}

function editRule(placement, rule) {
  $("#rule-placement").value = placement;
  $("#rule-include").value = rule.include_categories.join(", ");
  $("#rule-exclude").value = rule.exclude_categories.join(", ");
  $("#rule-exclude-items").value = rule.exclude_items.join(", ");
  $("#rule-min-price").value = rule.min_price ?? "";
  $("#rule-max-price").value = rule.max_price ?? "";
  $("#rule-max-age").value = rule.max_age_days ?? "";
  $("#rule-promoted").value = rule.promoted.join(", ");
  $("#rule-slot").value = rule.promoted_slot + 1;
  $("#boosts").replaceChildren();
  rule.boosts.forEach(boostRow);
}

function shows(rule) {
  const parts = [];
  if (rule.include_categories.length) parts.push(`only ${rule.include_categories.join(", ")}`);
  if (rule.exclude_categories.length) parts.push(`not ${rule.exclude_categories.join(", ")}`);
  if (rule.exclude_items.length) parts.push(`not ${rule.exclude_items.length} item(s)`);
  if (rule.min_price != null || rule.max_price != null) parts.push(`price ${rule.min_price ?? 0} to ${rule.max_price ?? "any"}`);
  if (rule.max_age_days != null) parts.push(`added within ${rule.max_age_days} days`);
  return parts.join("; ") || "everything";
}

const boostText = (b) => `${b.category || (b.attribute ? `${b.attribute}=${b.value}` : `new within ${b.new_within_days} d`)} ${b.weight > 0 ? "+" : ""}${b.weight}`;
const promotes = (rule) => (rule.promoted.length ? `${rule.promoted.join(", ")} from place ${rule.promoted_slot + 1}` : "–");

function placementLink({ placement, rule }) {
  const link = Object.assign(document.createElement("a"), { className: "item", textContent: placement });
  link.addEventListener("click", () => editRule(placement, rule));
  return link;
}

async function rules() {
  const listed = await json("/rules");
  fill($("#rules-table"), listed, (r) => [placementLink(r), shows(r.rule), r.rule.boosts.map(boostText).join(", ") || "–", promotes(r.rule)],
    "no rules yet: every placement shows the model's answer");
}

async function changeRule(method, body) {
  const placement = $("#rule-placement").value.trim() || "default";
  try {
    const options = body ? { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } } : {};
    await json(`/rules/${encodeURIComponent(placement)}`, { method, ...options });
    $("#rule-result").textContent = method === "PUT" ? `saved: in force for ${placement}` : `removed from ${placement}`;
    await rules();
  } catch (error) {
    $("#rule-result").textContent = `not changed: ${error.message}`;
  }
}

$("#add-boost").addEventListener("click", () => boostRow());
$("#rule-form").addEventListener("submit", (event) => { event.preventDefault(); changeRule("PUT", ruleOf()); });
$("#delete-rule").addEventListener("click", () => changeRule("DELETE"));

// --- experiments --------------------------------------------------------------

function variantRow(variant = {}) {
  const row = Object.assign(document.createElement("div"), { className: "row variant" });
  const input = (cls, props) => Object.assign(document.createElement("input"), { className: cls, ...props });
  const name = input("variant-name", { required: true, maxLength: 32, placeholder: "name", value: variant.name || "" });
  const share = input("variant-share", { type: "number", min: 0, max: 1, step: "any", required: true, value: variant.share ?? 0.5 });
  const rule = input("variant-rule", { maxLength: 64, placeholder: "the placement's own", value: variant.rule_placement || "" });
  const diversity = input("variant-diversity", { type: "number", min: 0, max: 1, step: "any", placeholder: "the request's", value: variant.diversity ?? "" });
  const remove = Object.assign(document.createElement("button"), { type: "button", textContent: "remove" });
  remove.addEventListener("click", () => row.remove());
  row.append(name, "share", share, "rule of", rule, "diversity", diversity, remove);
  $("#variants").append(row);
}

function experimentOf() {
  const variants = [...document.querySelectorAll("#variants .variant")].map((row) => {
    const value = (cls) => row.querySelector(cls).value.trim();
    const variant = { name: value(".variant-name"), share: Number(value(".variant-share")) };
    if (value(".variant-rule")) variant.rule_placement = value(".variant-rule");
    if (value(".variant-diversity") !== "") variant.diversity = Number(value(".variant-diversity"));
    return variant;
  });
  return { name: $("#experiment-name").value.trim(), variants };
}

function editExperiment(placement, experiment) {
  $("#experiment-placement").value = placement;
  $("#experiment-name").value = experiment.name;
  $("#variants").replaceChildren();
  experiment.variants.forEach(variantRow);
}

const percent = (rate) => (rate ? `${(100 * rate.value).toFixed(2)}% (${(100 * rate.low).toFixed(2)} to ${(100 * rate.high).toFixed(2)})` : "no answers yet");

// Each variant's rate as a dot on its 95% interval, on one scale per experiment: overlapping bars, no clear winner yet.
function intervals(results, which, title) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const height = 24 * results.length + 20;
  svg.setAttribute("viewBox", `0 0 1000 ${height}`);
  svg.setAttribute("class", "intervals");
  const top = Math.max(0.001, ...results.map((r) => (r[which] ? r[which].high : 0)));
  const x = (v) => 80 + (900 * v) / top;
  const add = (tag, attributes, text) => {
    const shape = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.entries(attributes).forEach(([k, v]) => shape.setAttribute(k, v));
    if (text) shape.textContent = text;
    svg.append(shape);
  };
  add("text", { x: 4, y: 12 }, `${title}, 0 to ${(100 * top).toFixed(2)}%`);
  results.forEach((r, i) => {
    const y = 30 + 24 * i;
    add("text", { x: 4, y: y + 4 }, r.variant);
    const rate = r[which];
    if (!rate) return;
    add("line", { x1: x(rate.low), x2: x(rate.high), y1: y, y2: y, class: "interval" });
    add("circle", { cx: x(rate.value), cy: y, r: 4, class: "rate" });
  });
  return svg;
}

function experimentView({ placement, experiment, results }) {
  const part = Object.assign(document.createElement("div"), { className: "report experiment" });
  const title = Object.assign(document.createElement("a"), { className: "item", textContent: `${placement}: ${experiment.name}` });
  title.addEventListener("click", () => editExperiment(placement, experiment));
  const heading = document.createElement("h2");
  heading.append(title);
  part.append(heading);
  const table = document.createElement("table");
  table.createTHead().innerHTML = "<tr><th>variant</th><th>share</th><th>rule of</th><th>answers</th><th>clicks</th><th>CTR</th><th>purchases</th><th>conversion</th><th>revenue</th></tr>";
  table.createTBody();
  const rulesOf = Object.fromEntries(experiment.variants.map((v) => [v.name, v.rule_placement || placement]));
  fill(table, results, (r) => [r.variant, r.share, rulesOf[r.variant], r.answers, r.clicks, percent(r.ctr), r.purchases, percent(r.conversion), fixed(r.revenue, 2)]);
  const scroll = Object.assign(document.createElement("div"), { className: "scroll nowrap" });
  scroll.append(table);
  part.append(scroll, intervals(results, "ctr", "click-through"), intervals(results, "conversion", "conversion"));
  return part;
}

async function experiments() {
  const listed = await json("/experiments");
  const box = $("#experiment-results");
  if (!listed.length) {
    box.textContent = "No experiments yet: every placement answers under its own rule.";
    return;
  }
  box.replaceChildren(...listed.map(experimentView));
}

async function changeExperiment(method, body) {
  const placement = $("#experiment-placement").value.trim() || "default";
  try {
    const options = body ? { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } } : {};
    await json(`/experiments/${encodeURIComponent(placement)}`, { method, ...options });
    $("#experiment-result").textContent = method === "PUT" ? `running on ${placement}` : `ended on ${placement}`;
    await experiments();
  } catch (error) {
    $("#experiment-result").textContent = `not changed: ${error.message}`;
  }
}

$("#add-variant").addEventListener("click", () => variantRow());
$("#experiment-form").addEventListener("submit", (event) => { event.preventDefault(); changeExperiment("PUT", experimentOf()); });
$("#end-experiment").addEventListener("click", () => changeExperiment("DELETE"));
variantRow({ name: "a", share: 0.5 });
variantRow({ name: "b", share: 0.5 });

// --- quality ----------------------------------------------------------------

async function quality() {
  const view = await json("/console/api/reports");
  const box = $("#reports");
  if (!view.images.length && !Object.keys(view.summaries).length) return;
  box.replaceChildren();
  for (const [name, summary] of Object.entries(view.summaries)) {
    const part = Object.assign(document.createElement("div"), { className: "report" });
    part.append(Object.assign(document.createElement("h2"), { textContent: name }));
    const table = document.createElement("table");
    table.createTBody();
    fill(table, Object.entries(summary || {}), ([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : v]);
    part.append(table);
    box.append(part);
  }
  for (const name of view.images) {
    const blob = await (await call(`/console/api/reports/${encodeURIComponent(name)}`)).blob();
    const part = Object.assign(document.createElement("div"), { className: "report" });
    part.append(Object.assign(document.createElement("h2"), { textContent: name }));
    part.append(Object.assign(document.createElement("img"), { src: URL.createObjectURL(blob), alt: name }));
    box.append(part);
  }
}

// --- pages ------------------------------------------------------------------

const loaders = { overview, models, playground: async () => {}, rules, experiments, quality };
const live = new Set(["overview", "experiments"]); // refreshed every two seconds while shown
let shown = "overview";

function show(page) {
  shown = page;
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.page === page));
  document.querySelectorAll("main section").forEach((s) => (s.hidden = s.id !== page));
  loaders[page]().then(() => showError(null), showError);
}

document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => show(b.dataset.page)));
setInterval(() => { if (live.has(shown)) loaders[shown]().then(() => showError(null), showError); }, 2000);
show(location.hash.slice(1) in loaders ? location.hash.slice(1) : "overview");
