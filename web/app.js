/*
 * The wavesched page: no framework, no build step.  A tenant token sees its
 * tenants' windows (when, why, moves) and the state of the rollout each
 * belongs to; every other role sees the rollouts with per-wave progress,
 * gate results and pending approvals, updated live from /v1/events.
 *
 * Everything shown comes from the API with the token the person typed; the
 * page holds no data of its own.  Text is always set with textContent (never
 * parsed as HTML), and the service's Content-Security-Policy allows only this
 * script.  EventSource cannot send an Authorization header, so the event
 * stream is read with fetch and parsed here (the SSE format is lines).
 */
"use strict";

const state = {
  token: null,
  who: null,
  lastEventId: null,
  stream: null,            // AbortController of the event stream
  pollTimer: null,
  refreshTimers: new Map(),
  rollouts: new Map(),     // id -> rollout document (platform view)
};

const MAX_ROLLOUTS = 12;
const POLL_MS = 5000;
const ENDED = new Set(["completed", "aborted", "rolled_back", "halted"]);

/* ---- small helpers ------------------------------------------------------ */

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("data-") || k === "title" || k === "href" || k === "role" || k.startsWith("aria-"))
      el.setAttribute(k, String(v));
    else el[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function badge(s) {
  return h("span", { class: `badge s-${s}`, text: String(s).replace(/_/g, " ") });
}

function setStatus(msg) {
  document.getElementById("status").textContent = msg || "";
}

function setLive(mode) {
  const el = document.getElementById("live");
  el.dataset.live = mode;
  el.textContent = mode === "on" ? "live" : mode === "poll" ? "polling" : "offline";
}

async function api(path) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
  const text = await res.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch (e) { doc = null; }
  if (!res.ok) {
    const msg = doc && doc.error ? doc.error.message : `HTTP ${res.status}`;
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  return doc;
}

/* Times: an RFC 3339 instant shown in a zone (the tenant's own), or in the
 * browser's zone when none is given. */
function fmtTime(iso, zone) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const opts = { weekday: "short", day: "numeric", month: "short", year: "numeric",
                 hour: "2-digit", minute: "2-digit", timeZoneName: "short" };
  try {
    return new Intl.DateTimeFormat(undefined, zone ? { ...opts, timeZone: zone } : opts).format(d);
  } catch (e) {
    return new Intl.DateTimeFormat(undefined, opts).format(d);
  }
}

function fmtRange(start, end, zone) {
  if (!start) return "no time yet";
  const s = fmtTime(start, zone);
  if (!end) return s;
  const e = new Date(end);
  let endText;
  try {
    endText = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit",
      timeZone: zone || undefined }).format(e);
  } catch (x) {
    endText = fmtTime(end);
  }
  return `${s} – ${endText}`;
}

/* ---- tenant view ----------------------------------------------------------- */

function windowRow(w, zone, isNext) {
  const why = (w.reasons || []).join("; ");
  const moves = (w.moves || []).map((m) =>
    h("li", { text: `moved from ${fmtTime(m.from_start, zone)} to ${fmtTime(m.to_start, zone)}: ${m.reason || "no reason recorded"}` }));
  return h("tr", { class: isNext ? "next" : null, "data-rollout": w.rollout, "data-status": w.status },
    h("td", {}, fmtRange(w.window_start, w.window_end, zone), isNext ? h("div", { class: "muted", text: "your next window" }) : null),
    h("td", {}, `${w.kind === "urgent" ? "Urgent " : ""}${w.release}`,
      h("div", { class: "muted", text: `rollout ${w.rollout}: ` }, badge(w.rollout_state))),
    h("td", {}, w.wave ? `${w.wave.index}. ${w.wave.name}` : "—"),
    h("td", {}, badge(w.status), " ", badge(w.state),
      w.cancelled ? h("div", { class: "muted", text: w.cancel_reason }) : null),
    h("td", {}, why || "—", moves.length ? h("ul", { class: "moves" }, moves) : null));
}

function renderTenant(doc) {
  const now = Date.now();
  const upcoming = doc.windows.filter((w) => !w.cancelled && w.window_end_utc && Date.parse(w.window_end_utc) > now);
  const next = upcoming.length ? upcoming[0] : null;
  const rows = doc.windows.map((w) => windowRow(w, doc.zone, w === next));
  const current = doc.windows.filter((w) => !w.cancelled && !ENDED.has(w.rollout_state));
  return h("section", { class: "card", "data-tenant": doc.tenant },
    h("h2", { text: `${doc.name} (${doc.tenant})` }),
    h("p", { class: "muted" },
      `Times in ${doc.zone}. `,
      current.length ? `Current rollout: ${current[0].release}, ` : "No rollout in progress. ",
      current.length ? badge(current[0].rollout_state) : null,
      doc.zone_note ? ` ${doc.zone_note}` : ""),
    doc.windows.length
      ? h("table", {},
          h("thead", {}, h("tr", {}, ["When", "Release", "Wave", "State", "Why this window"].map((t) => h("th", { text: t })))),
          h("tbody", {}, rows))
      : h("p", { class: "muted", text: "No scheduled window." }),
    h("p", { class: "muted" },
      "Calendar feed (send this token as a bearer token): ",
      h("code", { text: `${location.origin}/v1/tenants/${encodeURIComponent(doc.tenant)}/windows.ics` })));
}

async function loadTenants() {
  const view = document.getElementById("view");
  const sections = [];
  for (const slug of state.who.tenants) {
    try {
      sections.push(renderTenant(await api(`/v1/tenants/${encodeURIComponent(slug)}/windows`)));
    } catch (e) {
      sections.push(h("section", { class: "card", "data-tenant": slug },
        h("h2", { text: slug }), h("p", { class: "muted", text: e.message })));
    }
  }
  view.replaceChildren(...sections);
}

/* ---- platform view ---------------------------------------------------------- */

function waveRow(w) {
  const total = w.tenants.length;
  const done = w.tenants.filter((t) => t.state === "healthy" || t.state === "rolled_back").length;
  const failed = w.tenants.filter((t) => t.state === "failed" || t.state === "skipped").length;
  const bar = h("span", {});
  bar.style.width = total ? `${Math.round((100 * done) / total)}%` : "0%";
  const min = (w.settings && w.settings.approval && w.settings.approval.min) || 0;
  const approved = w.approvals.filter((a) => a.decision === "approve").length;
  const rejected = w.approvals.some((a) => a.decision === "reject");
  let need = null;
  if (rejected) need = h("span", { class: "need", text: "rejected" });
  else if (w.state === "pending" && approved < min)
    need = h("span", { class: "need", "data-pending-approvals": min - approved,
                       text: `needs ${min - approved} more approval${min - approved === 1 ? "" : "s"}` });
  const gates = [];
  for (const t of w.tenants) {
    const last = t.gates && t.gates.length ? t.gates[t.gates.length - 1] : null;
    if (last && (last.result === "fail" || t.state === "failed"))
      gates.push(h("span", { class: "fail", text: `${t.slug}: ${last.gate} ${last.result}${t.state_reason ? ` (${t.state_reason})` : ""}. ` }));
  }
  const passedGates = w.tenants.reduce((n, t) => n + (t.gates || []).filter((g) => g.result === "pass").length, 0);
  return h("div", { class: "wave-block" },
    h("div", { class: "wave", "data-wave": w.index, "data-state": w.state },
      h("span", { text: `${w.index}. ${w.name}` }),
      badge(w.state),
      h("div", { class: `bar${failed ? " bad" : ""}`, title: `${done} of ${total} tenants done` }, bar),
      h("span", { class: "muted", text: `${done}/${total} healthy${failed ? `, ${failed} failed or skipped` : ""}` }, need ? " " : "", need)),
    h("div", { class: "gates" }, `${passedGates} gate checks passed. `, gates));
}

function renderRollout(r) {
  return h("section", { class: "card", "data-rollout": r.id, "data-state": r.state },
    h("h2", {}, `Rollout ${r.id}: ${r.release_kind === "urgent" ? "urgent " : ""}${r.release} `, badge(r.state)),
    h("p", { class: "muted", text: `policy ${r.policy} v${r.policy_version}, plan v${r.plan_version}, created by ${r.created_by}, starts ${fmtTime(r.start)}${r.state_reason ? ` — ${r.state_reason}` : ""}` }),
    h("div", { class: "waves" }, r.waves.map(waveRow)));
}

function renderRollouts() {
  const view = document.getElementById("view");
  const list = [...state.rollouts.values()].sort((a, b) => {
    const ae = ENDED.has(a.state), be = ENDED.has(b.state);
    return ae !== be ? (ae ? 1 : -1) : b.id - a.id;
  });
  view.replaceChildren(list.length ? h("div", {}, list.map(renderRollout))
                                   : h("p", { class: "muted", text: "No rollout yet." }));
}

async function loadRollouts() {
  const doc = await api("/v1/rollouts");
  const ids = doc.rollouts.map((r) => r.id).sort((a, b) => b - a).slice(0, MAX_ROLLOUTS);
  const docs = await Promise.all(ids.map((id) => api(`/v1/rollouts/${id}`).catch(() => null)));
  state.rollouts.clear();
  for (const r of docs) if (r) state.rollouts.set(r.id, r);
  renderRollouts();
}

async function refreshRollout(id) {
  try {
    state.rollouts.set(id, await api(`/v1/rollouts/${id}`));
    renderRollouts();
  } catch (e) {
    if (e.status === 404) { state.rollouts.delete(id); renderRollouts(); }
  }
}

/* ---- live updates --------------------------------------------------------------- */

function schedule(key, fn) {
  if (state.refreshTimers.has(key)) return;
  state.refreshTimers.set(key, setTimeout(() => { state.refreshTimers.delete(key); fn(); }, 200));
}

function onEvent(ev) {
  if (state.who.role === "tenant") {
    schedule("tenants", loadTenants);
    return;
  }
  const id = ev && (ev.rollout || (ev.payload && ev.payload.rollout));
  if (id && state.rollouts.has(Number(id))) schedule(`r${id}`, () => refreshRollout(Number(id)));
  else schedule("all", loadRollouts);
}

function reload() {
  return state.who.role === "tenant" ? loadTenants() : loadRollouts();
}

function startPolling() {
  setLive("poll");
  if (!state.pollTimer) state.pollTimer = setInterval(() => reload().catch((e) => setStatus(e.message)), POLL_MS);
}

/* Reads one SSE stream until it ends; resolves false when the service has
 * no event stream (then the page polls). */
async function readStream(ctrl) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
  if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
  const res = await fetch("/v1/events", { headers, signal: ctrl.signal });
  if (res.status === 404 || res.status === 405 || res.status === 501) return false;
  if (!res.ok || !res.body) throw new Error(`events: HTTP ${res.status}`);
  setLive("on");
  if (state.pollTimer) { clearInterval(state.pollTimer); state.pollTimer = null; }
  await reload();   // whatever happened while the stream was down
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  let ev = { data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return true;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === "\r" && buf[nl + 1] === "\n" ? 2 : 1));
      if (line === "") {
        if (ev.data.length) {
          if (ev.id !== undefined) state.lastEventId = ev.id;
          let doc = null;
          try { doc = JSON.parse(ev.data.join("\n")); } catch (e) { doc = null; }
          onEvent(doc);
        }
        ev = { data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "data") ev.data.push(val);
      else if (field === "id") ev.id = val;
      else if (field === "event") ev.type = val;
    }
  }
}

async function followEvents() {
  const ctrl = new AbortController();
  state.stream = ctrl;
  let delay = 1000;
  while (state.stream === ctrl) {
    try {
      const has = await readStream(ctrl);
      if (!has) { startPolling(); return; }
      delay = 1000;
    } catch (e) {
      if (state.stream !== ctrl) return;
      startPolling();
    }
    if (state.stream !== ctrl) return;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

/* ---- sign in and out ----------------------------------------------------------------- */

function signOut() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  if (state.pollTimer) clearInterval(state.pollTimer);
  state.pollTimer = null;
  state.token = state.who = null;
  state.rollouts.clear();
  sessionStorage.removeItem("wavesched-token");
  document.getElementById("who").hidden = true;
  document.getElementById("signin").hidden = false;
  document.getElementById("view").replaceChildren(h("p", { class: "hint", text: "Signed out." }));
  setLive("off");
}

async function signIn(token) {
  state.token = token;
  setStatus("");
  try {
    state.who = await api("/v1/whoami");
  } catch (e) {
    state.token = null;
    setStatus(e.status === 401 ? "This token is not valid (unknown, expired or revoked)." : e.message);
    return;
  }
  sessionStorage.setItem("wavesched-token", token);
  document.getElementById("signin").hidden = true;
  document.getElementById("who").hidden = false;
  const scope = state.who.role === "tenant" ? ` for ${state.who.tenants.join(", ")}` : "";
  document.getElementById("who-text").textContent = `${state.who.name} (${state.who.role}${scope})`;
  document.body.dataset.role = state.who.role;
  try {
    await reload();
  } catch (e) {
    setStatus(e.message);
  }
  followEvents();
}

document.getElementById("signin").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = document.getElementById("token");
  const t = input.value.trim();
  input.value = "";
  if (t) signIn(t);
});
document.getElementById("signout").addEventListener("click", signOut);
const saved = sessionStorage.getItem("wavesched-token");
if (saved) signIn(saved);
