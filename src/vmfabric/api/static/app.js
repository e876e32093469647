// The web UI: reads the views of /api/v1, draws the fabric and the panels, and re-reads
// what an event changed (debounced), so the page follows the fabric without a reload.

import { Unauthorized, forgetToken, get, post, setToken, stream, token } from "./api.js";
import { drawFabric } from "./fabric.js";

const VIEWS = {
  vms: "/api/v1/vms",
  hosts: "/api/v1/hosts",
  interfaces: "/api/v1/interfaces",
  switches: "/api/v1/switches",
  sessions: "/api/v1/sessions",
  plans: "/api/v1/plans?status=held",
  audit: "/api/v1/audit?limit=50",
  controllers: "/api/v1/controllers",
};
// what each event kind may have changed (an apply is recorded after the inventory that
// caused it, so member events also re-read the VMs)
const AFFECTS = {
  vm: ["vms", "sessions"],
  events: ["vms", "hosts", "sessions"],
  member: ["interfaces", "audit", "vms", "hosts"],
  plan: ["plans", "sessions", "interfaces"],
  session: ["sessions", "hosts", "vms"],
  target: ["switches"],
  apply: ["interfaces", "switches"],
  controller: ["controllers"],
  reset: Object.keys(VIEWS),
};
const EVENTS_SHOWN = 60;
const FULL_REFRESH = 10000; // ms: re-read everything now and then, for what no event names

const data = Object.fromEntries(Object.keys(VIEWS).map((k) => [k, []]));
const $ = (id) => document.getElementById(id);
let pending = new Set();
let timer = null;
let started = false;

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text ?? "";
  if (cls) td.className = cls;
  return td;
}

function toast(text) {
  const box = $("toast");
  box.textContent = text;
  box.classList.add("show");
  setTimeout(() => box.classList.remove("show"), 3000);
}

// ---- reading the views ---------------------------------------------------------------

async function refresh(names) {
  try {
    const got = await Promise.all(names.map((n) => get(VIEWS[n])));
    names.forEach((n, i) => { data[n] = got[i]; });
    render(names);
  } catch (err) {
    if (err instanceof Unauthorized) askToken("The token was refused.");
    else toast(`Could not read: ${err.message}`);
  }
}

function schedule(names) {
  for (const n of names) pending.add(n);
  if (timer) return;
  timer = setTimeout(() => {
    const names = [...pending];
    pending = new Set();
    timer = null;
    refresh(names);
  }, 120);
}

function render(names) {
  const touched = new Set(names);
  if (["vms", "hosts", "interfaces", "switches"].some((n) => touched.has(n))) renderFabric();
  if (touched.has("sessions")) renderSessions();
  if (touched.has("switches")) renderSwitches();
  if (touched.has("controllers")) renderControllers();
  if (touched.has("plans")) renderPlans();
  if (touched.has("audit")) renderAudit();
}

// ---- the fabric and "where is VM X" --------------------------------------------------

function searchHits() {
  const wanted = $("search").value.trim().toLowerCase();
  const hits = { vms: new Set(), hosts: new Set(), ports: new Set(), found: [] };
  if (!wanted) return hits;
  for (const vm of data.vms) {
    if (!vm.name.toLowerCase().includes(wanted)) continue;
    hits.vms.add(vm.name);
    hits.hosts.add(`${vm.session}\u0000${vm.host}`);
    for (const a of vm.attachments) hits.ports.add(`${a.switch}\u0000${a.port}`);
    hits.found.push(vm);
  }
  return hits;
}

function renderWhere(hits) {
  const box = $("where");
  box.replaceChildren();
  if (!$("search").value.trim()) return;
  if (!hits.found.length) {
    box.textContent = `No VM matches "${$("search").value.trim()}".`;
    return;
  }
  for (const vm of hits.found.slice(0, 20)) {
    const line = document.createElement("div");
    line.className = "found";
    line.dataset.vm = vm.name;
    const ports = vm.attachments.map((a) => `${a.switch} ${a.port}`).join(", ") || "no known switch port";
    const vlans = vm.networks.map((n) => `${n.portgroup} VLAN ${n.vlan ?? "none"}`).join(", ");
    line.textContent = `${vm.name} (${vm.power_state === "poweredOn" ? "on" : "off"}) on ${vm.host}` +
      ` → ${ports}${vlans ? ` · ${vlans}` : ""}`;
    box.appendChild(line);
  }
  if (hits.found.length > 20) box.appendChild(document.createTextNode(`… and ${hits.found.length - 20} more`));
}

function renderFabric() {
  const hits = searchHits();
  const counts = drawFabric($("fabric"), data, hits);
  $("fabric-summary").textContent = `${counts.switches} switches · ${counts.hosts} hosts · ${counts.vms} VMs`;
  renderWhere(hits);
}

// ---- panels --------------------------------------------------------------------------

function renderSessions() {
  const body = $("sessions").tBodies[0];
  body.replaceChildren();
  for (const s of data.sessions) {
    const row = body.insertRow();
    row.dataset.session = s.name;
    cell(row, s.name);
    cell(row, s.kind);
    const state = cell(row, s.state, `state ${s.state}`);
    if (s.last_error) state.title = s.last_error;
    cell(row, s.in_sync ? "in sync" : "not in sync", `sync ${s.in_sync ? "yes" : "no"}`);
    cell(row, s.hosts);
    cell(row, s.vms);
  }
}

function renderSwitches() {
  const body = $("switches").tBodies[0];
  body.replaceChildren();
  for (const s of data.switches) {
    const row = body.insertRow();
    row.dataset.switch = s.name;
    cell(row, s.name);
    cell(row, s.state, `state ${s.state}`);
    cell(row, s.last_error ?? s.error);
  }
}

function renderControllers() {
  const body = $("controllers").tBodies[0];
  body.replaceChildren();
  for (const c of data.controllers) {
    const row = body.insertRow();
    for (const key of ["id", "host", "pid", "role", "since"]) cell(row, c[key]);
  }
  const leader = data.controllers.find((c) => c.role === "leader");
  const pill = $("controller");
  pill.hidden = !data.controllers.length;
  pill.textContent = leader ? `leader ${leader.id}` : "no leader";
  pill.className = `pill ${leader ? "leader" : "standby"}`;
}

function planChanges(plan) {
  const list = document.createElement("ul");
  for (const p of plan.plan.ports || []) {
    const parts = [];
    if (p.add.length) parts.push(`add ${p.add.join(",")}`);
    if (p.remove.length) parts.push(`remove ${p.remove.join(",")}`);
    const item = document.createElement("li");
    item.textContent = `${p.switch} ${p.port}: ${parts.join("; ")}`;
    list.appendChild(item);
  }
  return list;
}

async function approve(plan, button) {
  button.disabled = true;
  try {
    const done = await post(`/api/v1/plans/${plan.id}/approve`);
    toast(`Plan ${plan.id} ${done.status}: the controller applies it.`);
    schedule(["plans", "sessions"]);
  } catch (err) {
    if (err instanceof Unauthorized) askToken("The token was refused.");
    else toast(`Plan ${plan.id}: ${err.message}`);
    button.disabled = false;
  }
}

function renderPlans() {
  const list = $("plans");
  list.replaceChildren();
  for (const plan of data.plans) {
    const item = document.createElement("li");
    item.dataset.plan = plan.id;
    const what = document.createElement("div");
    what.className = "what";
    what.textContent = `Plan ${plan.id} on ${plan.switch}`;
    const reason = document.createElement("div");
    reason.className = "reason";
    reason.textContent = plan.reason;
    const button = document.createElement("button");
    button.className = "approve";
    button.type = "button";
    button.textContent = "Approve";
    button.addEventListener("click", () => approve(plan, button));
    item.append(what, reason, planChanges(plan), button);
    list.appendChild(item);
  }
  $("plans-empty").hidden = data.plans.length > 0;
}

function when(value) {
  if (typeof value === "number") return new Date(value * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  return value ?? "";
}

function renderAudit() {
  const body = $("audit").tBodies[0];
  body.replaceChildren();
  for (const a of data.audit) {
    const row = body.insertRow();
    cell(row, when(a.time));
    cell(row, a.switch);
    cell(row, a.port);
    cell(row, a.vlan);
    cell(row, a.action, a.action);
    cell(row, a.reason);
  }
}

function summary(kind, d) {
  switch (kind) {
    case "vm": return `${d.vm} ${d.change} (host ${d.host})`;
    case "member": return `${d.switch ?? d.target} ${d.port ?? d.holder}: ${d.action} VLAN ${d.vlan ?? d.member}`;
    case "plan": return `plan ${d.id} on ${d.target} ${d.status}`;
    case "session": return `session ${d.name} ${d.state}${d.in_sync ? ", in sync" : ""}`;
    case "target": return `${d.name} ${d.state}${d.error ? `: ${d.error}` : ""}`;
    case "apply": return `${d.target}: ${d.changes} change(s)${d.error ? ` failed: ${d.error}` : ""}`;
    case "events": return `${d.count} source event(s)`;
    case "controller": return `${d.id} is ${d.role}`;
    default: return JSON.stringify(d);
  }
}

function logEvent(event) {
  const list = $("events");
  const item = document.createElement("li");
  item.dataset.kind = event.event;
  const body = event.data ? JSON.parse(event.data) : {};
  const stamp = document.createElement("time");
  stamp.textContent = (body.time || "").slice(11, 19);
  const kind = document.createElement("span");
  kind.className = "kind";
  kind.textContent = event.event;
  item.append(stamp, kind, document.createTextNode(summary(event.event, body.data || body)));
  list.prepend(item);
  while (list.children.length > EVENTS_SHOWN) list.lastChild.remove();
}

// ---- the token and start -------------------------------------------------------------

function askToken(message = "") {
  forgetToken();
  $("login-error").textContent = message;
  if (!$("login").open) $("login").showModal();
  $("token").focus();
}

function start() {
  if (started) return;
  started = true;
  refresh(Object.keys(VIEWS));
  setInterval(() => { if (token()) schedule(Object.keys(VIEWS)); }, FULL_REFRESH);
  stream({
    onEvent(event) {
      logEvent(event);
      schedule(AFFECTS[event.event] || []);
    },
    onState(live) {
      $("live").textContent = live ? "live" : "reconnecting";
      $("live").className = `pill ${live ? "on" : "off"}`;
      if (live) schedule(Object.keys(VIEWS)); // catch up on what a drop may have hidden
    },
    onUnauthorized() {
      started = false;
      askToken("The token was refused.");
    },
  });
}

async function signIn(event) {
  event.preventDefault();
  setToken($("token").value.trim());
  try {
    await get("/api/v1/controllers");
  } catch (err) {
    askToken(err instanceof Unauthorized ? "The token was refused." : err.message);
    return;
  }
  $("login").close();
  $("token").value = "";
  start();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("login").addEventListener("cancel", (e) => e.preventDefault());
  $("search-form").addEventListener("submit", (e) => e.preventDefault());
  $("search").addEventListener("input", () => renderFabric());
  $("signout").addEventListener("click", () => { forgetToken(); window.location.reload(); });
  if (token()) start();
  else askToken();
});
