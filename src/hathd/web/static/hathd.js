/* hathd web pages: the live parts. Vanilla JS, no framework, no inline script (CSP). */
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(method, path, body) {
  const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf();
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const reply = await fetch(path, opts);
  let data = null;
  try { data = await reply.json(); } catch (_e) { data = null; }
  if (!reply.ok) {
    const err = new Error((data && data.error) || `${reply.status} ${reply.statusText}`);
    err.status = reply.status;
    err.data = data || {};
    err.retryAfter = reply.headers.get("Retry-After");
    throw err;
  }
  return data;
}

function flash(message, kind = "error") {
  const box = $("#flash");
  if (!box) return;
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = !message;
}

function showError(id, message) {
  const box = $(id);
  box.textContent = message || "";
  box.hidden = !message;
}

/* -- formatting ------------------------------------------------------------------------ */

function bytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "?";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${sec} s` : `${sec} s`;
}

function when(t) {
  return t ? new Date(t * 1000).toLocaleString() : "—";
}

function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) dl.append(el("dt", { text: k }), el("dd", { text: v }));
}

/* -- the event WebSocket --------------------------------------------------------------- */

function live(rooms, onEvent) {
  const status = $("#live");
  let delay = 1000;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/api/v1/ws?rooms=${rooms.join(",")}`);
    ws.onopen = () => { delay = 1000; if (status) status.textContent = "Live"; };
    ws.onmessage = (msg) => {
      let event;
      try { event = JSON.parse(msg.data); } catch (_e) { return; }
      onEvent(event);
    };
    ws.onclose = () => {
      if (status) status.textContent = "Reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
}

/* Coalesce calls: one run at most every ``ms`` (a burst of events never starves it). */
function debounce(fn, ms) {
  let timer = null;
  return () => {
    if (timer !== null) return;
    timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
}

/* -- setup, login, logout ------------------------------------------------------------- */

function initSetup() {
  $("#setup-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const password = $("#password").value;
    if (password.length < 10) return showError("#setup-error", "The password needs at least 10 characters.");
    if (password !== $("#password2").value) return showError("#setup-error", "The two passwords differ.");
    const body = { password };
    const code = $("#setup_code").value.trim();
    if (code) body.setup_code = code;
    try {
      await api("POST", "/api/v1/auth/setup", body);
      location.assign("/");
    } catch (err) {
      showError("#setup-error", err.data.code === "setup_code"
        ? "This is not the server itself: give the setup code that hathd printed." : err.message);
    }
  });
}

function initLogin() {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/v1/auth/login", {
        username: $("#username").value, password: $("#password").value,
      });
      location.assign("/");
    } catch (err) {
      if (err.status === 429) {
        const wait = (err.data && err.data.retry_after) || err.retryAfter || "?";
        showError("#login-error", `Too many failed attempts: locked out, try again in ${wait} s.`);
      } else if (err.status === 401) {
        showError("#login-error", "Wrong user or password.");
      } else {
        showError("#login-error", err.message);
      }
    }
  });
}

function initLogout() {
  const button = $("#logout");
  if (!button) return;
  button.addEventListener("click", async () => {
    try { await api("POST", "/api/v1/auth/logout"); } catch (_e) { /* gone already */ }
    location.assign("/login");
  });
}

/* -- overview ------------------------------------------------------------------------- */

function flatten(obj, prefix = "", out = []) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix} ${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
    else if (!Array.isArray(v)) out.push([key.replaceAll("_", " "), v === null ? "—" : String(v)]);
  }
  return out;
}

async function loadOverview() {
  const status = await api("GET", "/api/v1/status");
  const body = $("#subsystems tbody");
  body.replaceChildren();
  for (const sub of status.subsystems) {
    const services = status.services.filter((s) => s.name === sub.name || s.name.startsWith(`${sub.name}.`) || s.name.startsWith(`${sub.name}-`));
    const state = !sub.enabled ? "off" : services.length ? services.map((s) => s.state).join(", ") : "on";
    const errors = services.map((s) => s.last_error).filter(Boolean);
    const reason = sub.reason || errors.join("; ") || "";
    body.append(el("tr", { "data-state": state },
      el("th", { scope: "row", text: sub.name }),
      el("td", {}, el("span", { class: `state state-${state.split(",")[0]}`, text: state })),
      el("td", { text: reason || "—" })));
  }
  const node = status.services.find((s) => s.name.startsWith("hath"));
  facts($("#node"), node ? [["service", node.state], ...flatten(node.statistics)] : [["State", "off"]]);
  for (const [id, path] of [["#fanfic", "/api/v1/fanfic/status"], ["#q4d", "/api/v1/q4d/status"]]) {
    try {
      facts($(id), flatten(await api("GET", path)).slice(0, 14));
    } catch (err) {
      facts($(id), [["State", err.status === 404 ? "not enabled" : err.message]]);
    }
  }
  try {
    const q = await api("GET", "/api/v1/queue");
    counters($("#counters"), q.statistics, q.paused);
  } catch (_e) { facts($("#counters"), [["Queue", "unavailable"]]); }
}

function counters(dl, s, paused) {
  facts(dl, [
    ["queued", s.queued], ["running", s.running], ["waiting", s.waiting], ["paused", s.paused],
    ["finished", s.finished], ["workers", s.workers],
    ["queue", paused && paused.length ? `paused (${paused.join(", ")})` : "running"],
  ]);
}

function initOverview() {
  const reload = debounce(() => loadOverview().catch((e) => flash(e.message)), 300);
  loadOverview().catch((e) => flash(e.message));
  const list = $("#events");
  live(["system", "jobs", "hath"], (ev) => {
    if (ev.type === "hello") return;
    const data = ev.data || {};
    const what = [data.kind, data.target || data.name || data.id].filter(Boolean).join(" ");
    list.prepend(el("li", {}, el("time", { text: new Date(ev.time * 1000).toLocaleTimeString() }),
      ` ${ev.room}: ${ev.type} ${what}`));
    while (list.children.length > 12) list.lastChild.remove();
    reload();
  });
  setInterval(() => loadOverview().catch(() => {}), 15000);
}

/* -- queue ---------------------------------------------------------------------------- */

const PENDING = ["queued", "waiting", "paused"];

function progressBar(job) {
  const p = job.progress || {};
  const pct = p.total ? Math.min(100, (100 * p.done) / p.total) : null;
  const bar = el("progress", { max: "100", "aria-label": `progress of ${job.target}` });
  if (pct !== null) bar.value = pct;
  const text = pct !== null
    ? `${pct.toFixed(1)} % · ${bytes(p.done)} of ${bytes(p.total)}`
    : `${bytes(p.done || 0)}`;
  const speed = p.rate ? `${bytes(p.rate)}/s` : "—";
  const eta = p.eta !== null && p.eta !== undefined ? duration(p.eta) : "—";
  return el("div", { class: "progress" }, bar,
    el("span", { class: "pct", text }),
    el("span", { class: "speed", text: `speed ${speed}` }),
    el("span", { class: "eta", text: `ETA ${eta}` }));
}

function jobLabel(job) {
  const by = job.submitted_by ? el("span", { class: "by", text: ` · by ${job.submitted_by.user}` }) : "";
  return el("span", { class: "target" }, el("span", { class: "kind", text: job.kind }), ` ${job.target}`, by);
}

function pendingRow(job, index) {
  const handle = el("button", {
    type: "button", class: "handle",
    "aria-label": `Move ${job.target} (position ${index + 1}); use the up and down arrow keys`,
    title: "Drag, or use the arrow keys",
  }, "⠿");
  const li = el("li", { "data-id": job.id, "data-state": job.state },
    handle,
    el("span", { class: "pos", text: `${index + 1}.` }),
    jobLabel(job),
    el("span", { class: `state state-${job.state}`, text: job.state }));
  return li;
}

function activeRow(job) {
  return el("li", { "data-id": job.id },
    jobLabel(job), el("span", { class: "state state-running", text: "running" }), progressBar(job));
}

function doneRow(job) {
  const link = resultLink(job);
  return el("li", { "data-id": job.id }, jobLabel(job),
    el("time", { text: when(job.finished_at || job.updated_at) }), link || "");
}

function failedRow(job) {
  const retry = el("button", { type: "button", class: "secondary retry", "data-id": job.id }, "Retry");
  return el("li", { "data-id": job.id, "data-state": job.state }, jobLabel(job),
    el("span", { class: "state state-failed", text: job.state }),
    el("span", { class: "error-text", text: job.error || "—" }), retry);
}

function resultLink(job) {
  const r = job.result || {};
  const url = r.url || r.link || r.gallery_url || (Array.isArray(r.links) && r.links[0]);
  if (typeof url === "string" && /^https?:\/\//.test(url)) return el("a", { href: url, rel: "noopener", text: "result" });
  if (typeof r.path === "string") return el("code", { text: r.path });
  return null;
}

async function loadQueue() {
  if (dragged) return; /* the drop saves the order and reloads */
  const [pending, active, done, failed, q] = await Promise.all([
    api("GET", "/api/v1/jobs?state=queued,waiting,paused&limit=1000"),
    api("GET", "/api/v1/jobs?state=running&limit=1000"),
    api("GET", "/api/v1/jobs?state=done&limit=50"),
    api("GET", "/api/v1/jobs?state=failed,cancelled&limit=50"),
    api("GET", "/api/v1/queue"),
  ]);
  /* a re-render keeps the keyboard on the handle it was on (also when an earlier re-render
     already dropped the focus to the body) */
  const focused = document.activeElement;
  const inList = focused && focused.closest ? focused.closest("#pending li") : null;
  if (inList) lastHandle = inList.dataset.id;
  const focusId = inList || focused === document.body ? lastHandle : null;
  $("#pending").replaceChildren(...pending.jobs.map(pendingRow));
  $("#active").replaceChildren(...active.jobs.map(activeRow));
  $("#done").replaceChildren(...done.jobs.map(doneRow));
  $("#failed").replaceChildren(...failed.jobs.map(failedRow));
  $("#pending-count").textContent = `(${pending.total})`;
  $("#active-count").textContent = `(${active.total})`;
  $("#done-count").textContent = `(${done.total})`;
  $("#failed-count").textContent = `(${failed.total})`;
  counters($("#counters"), q.statistics, q.paused);
  if (focusId) {
    const h = $(`#pending li[data-id="${focusId}"] .handle`);
    if (h) h.focus();
  }
}

function renumber() {
  [...$("#pending").children].forEach((li, i) => { li.querySelector(".pos").textContent = `${i + 1}.`; });
}

async function saveOrder() {
  const ids = [...$("#pending").children].map((li) => li.dataset.id);
  try {
    await api("POST", "/api/v1/queue/reorder", { item_ids: ids });
    $("#live").textContent = "Order saved";
  } catch (err) {
    flash(`The new order was not saved: ${err.message}`);
  }
  await loadQueue();
}

let lastHandle = null; /* the id of the pending row whose handle had the focus last */
let dragged = null; /* the pending row being dragged: live reloads wait until it is dropped */

/* Drag by pointer events (mouse, pen, touch alike; HTML5 drag and drop gives no pointer
   position to scripts on touch screens and cannot be driven by WebDriver input). */
function initReorder() {
  const list = $("#pending");
  let moved = false;
  list.addEventListener("pointerdown", (ev) => {
    const handle = ev.target.closest(".handle");
    if (!handle || ev.button !== 0) return;
    ev.preventDefault();
    dragged = handle.closest("li");
    moved = false;
    dragged.classList.add("dragging");
    handle.setPointerCapture(ev.pointerId);
  });
  list.addEventListener("pointermove", (ev) => {
    if (!dragged) return;
    const under = document.elementFromPoint(ev.clientX, ev.clientY);
    const over = under && under.closest("#pending > li");
    if (!over || over === dragged) return;
    const box = over.getBoundingClientRect();
    const after = ev.clientY > box.top + box.height / 2;
    list.insertBefore(dragged, after ? over.nextSibling : over);
    moved = true;
    renumber();
  });
  const drop = () => {
    if (!dragged) return;
    dragged.classList.remove("dragging");
    const handle = dragged.querySelector(".handle");
    dragged = null;
    if (handle) handle.focus();
    if (moved) saveOrder();
  };
  list.addEventListener("pointerup", drop);
  list.addEventListener("pointercancel", drop);
  list.addEventListener("keydown", (ev) => {
    const handle = ev.target.closest(".handle");
    if (!handle || !["ArrowUp", "ArrowDown"].includes(ev.key)) return;
    ev.preventDefault();
    const li = handle.closest("li");
    const other = ev.key === "ArrowUp" ? li.previousElementSibling : li.nextElementSibling;
    if (!other) return;
    if (ev.key === "ArrowUp") list.insertBefore(li, other);
    else list.insertBefore(other, li);
    renumber();
    handle.focus();
    saveOrder();
  });
}

function initQueue() {
  const reload = debounce(() => loadQueue().catch((e) => flash(e.message)), 250);
  loadQueue().catch((e) => flash(e.message));
  initReorder();
  $("#queue-pause").addEventListener("click", () => api("POST", "/api/v1/queue/pause").then(reload, (e) => flash(e.message)));
  $("#queue-resume").addEventListener("click", () => api("POST", "/api/v1/queue/resume").then(reload, (e) => flash(e.message)));
  $("#clear-done").addEventListener("click", () => api("DELETE", "/api/v1/jobs?state=done").then(reload, (e) => flash(e.message)));
  $("#clear-failed").addEventListener("click", () => api("DELETE", "/api/v1/jobs?state=failed,cancelled").then(reload, (e) => flash(e.message)));
  $("#retry-all").addEventListener("click", async () => {
    const ids = [...$("#failed").children].map((li) => li.dataset.id);
    for (const id of ids) {
      try { await api("POST", `/api/v1/jobs/${encodeURIComponent(id)}/retry`); } catch (e) { flash(e.message); }
    }
    reload();
  });
  $("#failed").addEventListener("click", (ev) => {
    const b = ev.target.closest("button.retry");
    if (b) api("POST", `/api/v1/jobs/${encodeURIComponent(b.dataset.id)}/retry`).then(reload, (e) => flash(e.message));
  });
  live(["jobs", "progress"], (ev) => {
    if (ev.room === "progress") {
      const li = $(`#active li[data-id="${ev.data.id}"]`);
      if (li) li.querySelector(".progress").replaceWith(progressBar({ target: ev.data.target, progress: ev.data }));
      else reload();
    } else if (ev.room === "jobs") {
      reload();
    }
  });
}

/* -- library -------------------------------------------------------------------------- */

const NO_COVER = "data:image/svg+xml," + encodeURIComponent(
  '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="300"><rect width="200" height="300" fill="#d9d9de"/>'
  + '<text x="100" y="155" font-family="sans-serif" font-size="18" text-anchor="middle" fill="#3c3c44">no cover</text></svg>');

/* A cover image served by hathd (/covers/<key>); a failed load shows the placeholder. */
function coverImg(key) {
  const img = el("img", { class: "cover", src: `/covers/${encodeURIComponent(key)}`, alt: "", loading: "lazy" });
  img.addEventListener("error", () => { if (img.src !== NO_COVER) img.src = NO_COVER; }, { once: true });
  return img;
}

function seriesFacts(s) {
  return [s.year || "", s.status || "", `${s.present} on disk`, `${s.missing} missing`,
    s.followed ? "followed" : ""].filter(Boolean).join(" · ");
}

/* Rescan progress from the "anime" room: scan-progress per folder, scan-done at the end. */
function scanEvent(ev) {
  const box = $("#rescan-state");
  if (!box || ev.room !== "anime") return;
  const d = ev.data || {};
  if (ev.type === "scan-progress") box.textContent = `Scanning: folder ${d.index} of ${d.total} (${d.folder})`;
  else if (ev.type === "scan-done") {
    box.textContent = `Scan done: ${d.folders} folder(s), ${d.matched} matched`
      + (d.unmatched && d.unmatched.length ? `, not matched: ${d.unmatched.join(", ")}` : "")
      + (d.errors && d.errors.length ? `, ${d.errors.length} error(s)` : "");
  }
}

function initRescan(after) {
  const button = $("#rescan");
  button.addEventListener("click", async () => {
    button.disabled = true;
    $("#rescan-state").textContent = "Scanning…";
    try {
      const d = await api("POST", "/api/v1/anime/rescan", {});
      scanEvent({ room: "anime", type: "scan-done", data: d });
    } catch (e) { flash(e.message); $("#rescan-state").textContent = ""; }
    button.disabled = false;
    after();
  });
}

async function loadLibrary() {
  const state = $("#library-state");
  let data;
  try {
    data = await api("GET", "/api/v1/anime");
  } catch (err) {
    state.textContent = err.status === 404
      ? "The anime library is not enabled on this node." : `The library is unavailable: ${err.message}`;
    if (err.status === 404) for (const part of document.querySelectorAll("#main section")) part.hidden = true;
    return false;
  }
  const series = data.series || [];
  const missing = series.reduce((n, s) => n + (s.missing || 0), 0);
  state.textContent = series.length ? `${series.length} series, ${missing} episode(s) missing` : "The library is empty: search a series to add it.";
  $("#series").replaceChildren(...series.map((s) => el("li", { class: "cover-tile", "data-key": s.key },
    el("a", { href: `/library/${encodeURIComponent(s.key)}` }, coverImg(s.key), el("strong", { text: s.name || s.key })),
    el("span", { class: "facts", text: seriesFacts(s) }),
    s.missing ? el("span", { class: "badge missing", text: `${s.missing} missing` }) : el("span", { class: "complete", text: "complete" }))));
  return true;
}

function hitRow(h) {
  const status = el("span", { class: "hit-state", role: "status" });
  const add = async (follow) => {
    status.textContent = "Adding… (reading every season page)";
    try {
      const r = await api("POST", "/api/v1/anime", { ref: h.url || h.key, site: h.site, follow, queue: false });
      const key = (r.series && r.series.key) || h.key;
      status.replaceChildren(follow ? "Added and followed. " : "Added. ",
        el("a", { href: `/library/${encodeURIComponent(key)}`, text: `Open ${r.series ? r.series.name : key}` }));
    } catch (e) { status.textContent = `Not added: ${e.message}`; }
    loadLibrary();
  };
  const addButton = el("button", { type: "button", class: "secondary add", text: "Add" });
  addButton.addEventListener("click", () => add(false));
  const followButton = el("button", { type: "button", class: "secondary add-follow", text: "Add and follow" });
  followButton.addEventListener("click", () => add(true));
  return el("li", { "data-key": h.key, "data-site": h.site },
    el("strong", { text: h.name || h.key }), el("span", { class: "hint", text: ` ${h.site}` }),
    h.description ? el("p", { class: "hint", text: h.description }) : "",
    el("div", { class: "toolbar" }, addButton, followButton, status));
}

async function initLibrary() {
  const reload = debounce(() => loadLibrary(), 500);
  const enabled = await loadLibrary();
  initRescan(reload);
  $("#anime-search").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = $("#anime-keyword").value.trim();
    if (!text) return;
    $("#hits-state").textContent = "Searching…";
    try {
      const r = await api("POST", "/api/v1/anime/search", { text });
      const hits = r.results || [];
      $("#hits-state").textContent = hits.length ? `${hits.length} result(s)` : "Nothing found.";
      $("#anime-hits").replaceChildren(...hits.map(hitRow));
    } catch (e) {
      $("#hits-state").textContent = e.status === 404 ? "The anime library is not enabled on this node." : `Search failed: ${e.message}`;
    }
  });
  if (enabled) live(["anime"], (ev) => { scanEvent(ev); if (ev.type === "queued" || ev.type === "scan-done") reload(); });
}

/* -- one series ----------------------------------------------------------------------- */

const ACTIVE_STATES = ["queued", "waiting", "paused", "running"];

function seasonName(n) { return n === 0 ? "Films and specials" : `Season ${n}`; }

function episodeState(ep, job) {
  if (ep.file_path) return { state: "present", text: "on disk" };
  if (job && ACTIVE_STATES.includes(job.state)) {
    const p = job.progress || {};
    const pct = job.state === "running" && p.total ? ` ${Math.min(100, (100 * p.done) / p.total).toFixed(1)} %` : "";
    return { state: job.state, text: `${job.state}${pct}` };
  }
  if (job && job.state === "failed") return { state: "failed", text: `failed: ${job.error || "?"}` };
  if (!ep.offered) return { state: "gone", text: "not offered" };
  return { state: "missing", text: "missing" };
}

function initSeries() {
  const key = $("#series-root").dataset.key;
  const path = `/api/v1/anime/${encodeURIComponent(key)}`;
  const selected = new Set();
  let jobs = {};
  let followed = false;
  let episodes = [];

  /* the episode jobs that are not over (and the failed ones): a done job's file is on disk */
  async function loadJobs() {
    if (!episodes.some((e) => e.job && !e.file_path)) { jobs = {}; return; }
    const r = await api("GET", `/api/v1/jobs?kind=anime-episode&state=${[...ACTIVE_STATES, "failed"].join(",")}&limit=1000`);
    jobs = Object.fromEntries(r.jobs.map((j) => [j.id, j]));
  }

  function render() {
    const focused = document.activeElement && document.activeElement.id;
    const bySeason = new Map();
    for (const ep of episodes) {
      if (!bySeason.has(ep.season)) bySeason.set(ep.season, []);
      bySeason.get(ep.season).push(ep);
    }
    const seasons = [...bySeason.keys()].sort((a, b) => a - b);
    $("#seasons").replaceChildren(...seasons.map((n) => {
      const eps = bySeason.get(n);
      const present = eps.filter((e) => e.file_path).length;
      return el("fieldset", { class: "season", "data-season": n },
        el("legend", { text: `${seasonName(n)} — ${present} of ${eps.length} on disk` }),
        el("ul", { class: "episodes" }, ...eps.map((ep) => {
          const job = ep.job ? jobs[ep.job] : null;
          const st = episodeState(ep, job);
          const id = `ep-${ep.code}`;
          const box = el("input", { type: "checkbox", id, "data-code": ep.code, "data-season": ep.season, "data-number": ep.number,
            checked: st.state === "present" || selected.has(ep.code), disabled: st.state === "present" || !ep.offered });
          const langs = (ep.languages || []).join(", ");
          return el("li", { "data-code": ep.code, "data-state": st.state, "data-job": ep.job || "" },
            box, el("label", { for: id }, el("span", { class: "code", text: ep.code }), ` ${ep.title || ""}`),
            el("span", { class: `state state-${st.state}`, text: st.text }),
            langs ? el("span", { class: "hint", text: langs }) : "");
        })));
    }));
    if (!episodes.length) $("#seasons").replaceChildren(el("p", { text: "No episodes known yet." }));
    if (focused) { const again = document.getElementById(focused); if (again) again.focus(); }
  }

  async function load() {
    let data;
    try { data = await api("GET", path); } catch (err) {
      $("#series-state").textContent = err.status === 404 ? "This series is not in the library (or the library is not enabled)." : err.message;
      return;
    }
    const s = data.series;
    episodes = data.episodes || [];
    followed = !!s.followed;
    await loadJobs();
    document.title = `${s.name} · hathd`;
    $("h1").textContent = s.name;
    $("#series-cover").alt = `Cover of ${s.name}`;
    const missing = episodes.filter((e) => e.offered && !e.file_path).length;
    const present = episodes.filter((e) => e.file_path).length;
    $("#series-state").textContent = `${present} on disk, ${missing} missing${followed ? ", followed" : ""}`;
    $("#series-facts").textContent = [s.year, s.status, s.site, s.folder ? `folder “${s.folder}”` : ""].filter(Boolean).join(" · ");
    $("#series-description").textContent = s.description || "";
    const follow = $("#follow");
    follow.textContent = followed ? "Following (click to unfollow)" : "Follow";
    follow.setAttribute("aria-pressed", String(followed));
    render();
  }

  const reload = debounce(() => load().catch((e) => flash(e.message)), 300);
  load().catch((e) => flash(e.message));
  initRescan(reload);
  $("#series-cover").addEventListener("error", (ev) => { if (ev.target.src !== NO_COVER) ev.target.src = NO_COVER; }, { once: true });
  $("#seasons").addEventListener("change", (ev) => {
    const box = ev.target.closest("input[type=checkbox]");
    if (!box) return;
    if (box.checked) selected.add(box.dataset.code); else selected.delete(box.dataset.code);
  });
  $("#select-missing").addEventListener("click", () => {
    for (const li of document.querySelectorAll('#seasons li[data-state="missing"], #seasons li[data-state="failed"]')) {
      const box = li.querySelector("input");
      if (box.disabled) continue;
      box.checked = true;
      selected.add(box.dataset.code);
    }
  });
  $("#select-none").addEventListener("click", () => {
    selected.clear();
    for (const box of document.querySelectorAll("#seasons input:not([disabled])")) box.checked = false;
  });
  $("#follow").addEventListener("click", async () => {
    try { await api("POST", `${path}/follow`, { follow: !followed }); } catch (e) { flash(e.message); }
    await load();
  });
  $("#episodes-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const boxes = [...document.querySelectorAll("#seasons input:checked:not([disabled])")];
    if (!boxes.length) return showError("#queue-error", "Tick the episodes to queue first (or Select missing).");
    showError("#queue-error", "");
    const bySeason = new Map();
    for (const b of boxes) {
      const n = Number(b.dataset.season);
      if (!bySeason.has(n)) bySeason.set(n, []);
      bySeason.get(n).push(b.dataset.number);
    }
    const lang = $("#language").value;
    const button = $("#queue-selected");
    button.disabled = true;
    let queued = 0;
    const skipped = [];
    try {
      for (const [season, numbers] of bySeason) {
        const body = { seasons: [season], episodes: numbers.join(",") };
        if (lang) body.languages = [lang];
        const r = await api("POST", `${path}/queue`, body);
        for (const j of r.jobs || []) {
          if (j.job) queued += 1;
          else skipped.push(`S${String(j.season).padStart(2, "0")}E${String(j.episode).padStart(2, "0")}: ${j.skipped}`);
        }
      }
      selected.clear();
      flash(`${queued} episode(s) queued` + (skipped.length ? `; skipped ${skipped.join("; ")}` : "") + ".", skipped.length ? "error" : "ok");
    } catch (e) { showError("#queue-error", `Not queued: ${e.message}`); }
    button.disabled = false;
    await load();
  });
  live(["jobs", "progress", "anime"], (ev) => {
    if (ev.type === "hello") return;
    scanEvent(ev);
    const d = ev.data || {};
    if (ev.room === "progress") {
      const li = $(`#seasons li[data-job="${CSS.escape(d.id || "")}"]`);
      if (li && d.total) li.querySelector(".state").textContent = `running ${Math.min(100, (100 * d.done) / d.total).toFixed(1)} %`;
      return;
    }
    if (ev.room === "jobs" && !(d.kind === "anime-episode" || (d.id && jobs[d.id]))) return;
    if (ev.room === "anime" && ev.type === "queued" && d.series !== key) return;
    if (ev.room === "anime" && ev.type === "scan-progress") return;
    reload();
  });
}

/* -- uploads, fanfiction, transfers --------------------------------------------------- */

const WORK_KINDS = ["upload", "fanfic", "transfer", "q4d", "download", "gallery"];

async function loadWork() {
  const data = await api("GET", "/api/v1/jobs?limit=100");
  const rows = data.jobs.filter((j) => WORK_KINDS.includes(j.kind)).slice(0, 50);
  $("#recent tbody").replaceChildren(...rows.map((j) => el("tr", { "data-id": j.id },
    el("td", { text: j.kind }), el("td", { text: j.target }),
    el("td", {}, el("span", { class: `state state-${j.state}`, text: j.state })),
    el("td", {}, resultLink(j) || (j.error ? el("span", { class: "error-text", text: j.error }) : "—")),
    el("td", { text: when(j.updated_at) }))));
}

function safeLink(url, text) {
  return typeof url === "string" && /^https?:\/\//.test(url) ? el("a", { href: url, rel: "noopener", text }) : null;
}

async function loadBatches() {
  let listing;
  try {
    listing = await api("GET", "/api/v1/uploads?limit=10");
  } catch (err) {
    $("#batches-state").textContent = err.status === 404 ? "Uploads are not enabled on this node." : err.message;
    return;
  }
  const batches = await Promise.all(listing.batches.map((b) => api("GET", `/api/v1/uploads/${encodeURIComponent(b.batch)}`).catch(() => null)));
  $("#batches-state").textContent = batches.length ? "" : "No upload yet.";
  $("#batches tbody").replaceChildren(...batches.filter(Boolean).map((b) => {
    const links = [];
    const g = b.gallery || {};
    const gallery = safeLink(g.url, `gallery ${g.name || ""}`.trim());
    if (gallery) links.push(gallery, " ");
    const text = (b.output && b.output.links) || "";
    if (text) {
      links.push(el("details", {}, el("summary", { text: `links of ${b.counts.done} file(s)` }),
        el("textarea", { readonly: true, rows: "4", "aria-label": `links of batch ${b.batch}` }, text)));
    }
    const c = b.counts;
    return el("tr", { "data-id": b.batch },
      el("td", {}, el("code", { text: b.batch })), el("td", { text: b.service }),
      el("td", {}, el("span", { class: `state state-${b.state}`, text: b.state }),
        ` ${c.done} done, ${c.failed} failed, ${c.active} active`),
      el("td", {}, ...(links.length ? links : ["—"])), el("td", { text: when(b.created_at) }));
  }));
}

async function initWork() {
  const reload = debounce(() => { loadWork().catch((e) => flash(e.message)); loadBatches(); }, 300);
  loadWork().catch((e) => flash(e.message));
  loadBatches();
  const kind = $("#add-kind");
  kind.addEventListener("change", () => { $("#service-row").hidden = kind.value !== "upload"; });
  try {
    const r = await api("GET", "/api/v1/recipes");
    const hosts = (r.recipes || []).filter((x) => x.kind === "upload");
    $("#add-service").replaceChildren(...hosts.map((x) => el("option", { value: x.id, text: x.name === x.id ? x.id : `${x.name} (${x.id})` })));
  } catch (_e) { $("#add-service").replaceChildren(el("option", { value: "", text: "uploads are not enabled" })); }
  $("#add-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const target = $("#add-target").value.trim();
    if (!target) return showError("#add-error", "Give a URL or a folder.");
    try {
      if (kind.value === "download") await api("POST", "/api/v1/jobs", { url: target });
      else if (kind.value === "fanfic") await api("POST", "/api/v1/fanfic/stories", { urls: [target] });
      else await api("POST", "/api/v1/uploads", { paths: [target], service: $("#add-service").value });
      showError("#add-error", "");
      $("#add-target").value = "";
      flash("Added.", "ok");
      reload();
    } catch (err) {
      showError("#add-error", err.status === 404 ? "That part of hathd is not enabled." : err.message);
    }
  });
  live(["jobs"], reload);
}

/* -- settings ------------------------------------------------------------------------- */

/* Keys a reload cannot apply (hathd.reload decides; GET /api/v1/config/restart lists them)
   and the changed ones waiting for a restart now. */
let restartInfo = { keys: [], pending: [] };

function fieldId(key) { return `f-${key.replaceAll(".", "-")}`; }

function configFields(obj, prefix, root) {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const set = el("fieldset", {}, el("legend", { text: key }));
      root.append(set);
      configFields(v, key, set);
      continue;
    }
    const id = fieldId(key);
    const type = v === null ? "unset" : typeof v === "boolean" ? "bool" : typeof v === "number" ? "number" : typeof v === "string" ? "string" : "json";
    let input;
    if (type === "bool") input = el("input", { id, type: "checkbox", checked: v });
    else if (type === "number") input = el("input", { id, type: "text", inputmode: "decimal", value: String(v) });
    else if (type === "string") input = el("input", { id, type: "text", value: v });
    else if (type === "unset") input = el("input", { id, type: "text", value: "", placeholder: "not set" });
    else input = el("input", { id, type: "text", value: JSON.stringify(v) });
    input.dataset.key = key;
    input.dataset.type = type;
    input.setAttribute("aria-describedby", `${id}-err`);
    const label = el("label", { for: id }, k);
    if (restartInfo.pending.includes(key)) label.append(" ", el("span", { class: "badge pending", text: "restart pending" }));
    else if (restartInfo.keys.includes(key)) label.append(" ", el("span", { class: "badge", text: "needs restart" }));
    root.append(el("div", { class: "field" }, label, input,
      el("span", { class: "error field-error", id: `${id}-err`, hidden: true })));
  }
}

function readConfig() {
  const out = {};
  const problems = [];
  for (const input of document.querySelectorAll("#config-fields [data-key]")) {
    let value;
    const raw = input.value;
    if (input.dataset.type === "unset") {
      if (raw.trim() === "") continue; // left unset: the key stays out of the file
      try { value = JSON.parse(raw); } catch (_e) { value = raw; }
    } else if (input.dataset.type === "bool") value = input.checked;
    else if (input.dataset.type === "number") {
      value = Number(raw);
      if (raw.trim() === "" || !isFinite(value)) { problems.push({ key: input.dataset.key, message: "must be a number" }); continue; }
    } else if (input.dataset.type === "json") {
      try { value = JSON.parse(raw); } catch (_e) { problems.push({ key: input.dataset.key, message: "must be JSON (a list like [\"a\", \"b\"])" }); continue; }
    } else value = raw;
    const parts = input.dataset.key.split(".");
    let node = out;
    for (const p of parts.slice(0, -1)) node = node[p] = node[p] || {};
    node[parts[parts.length - 1]] = value;
  }
  return { config: out, problems };
}

function showProblems(problems) {
  for (const span of document.querySelectorAll(".field-error")) { span.hidden = true; span.textContent = ""; }
  for (const input of document.querySelectorAll("#config-fields [aria-invalid]")) input.removeAttribute("aria-invalid");
  const general = [];
  for (const p of problems) {
    const input = document.querySelector(`#config-fields [data-key="${CSS.escape(p.key)}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      const span = $(`#${fieldId(p.key)}-err`);
      span.textContent = p.message;
      span.hidden = false;
    } else general.push(`${p.key}: ${p.message}`);
  }
  showError("#config-error", problems.length ? `Not saved: ${problems.length} problem(s). ${general.join("; ")}` : "");
  if (problems.length) {
    const first = document.querySelector("#config-fields [aria-invalid]");
    if (first) first.focus();
  }
}

async function loadConfig() {
  const [data, restart] = await Promise.all([api("GET", "/api/v1/config"), api("GET", "/api/v1/config/restart")]);
  restartInfo = restart;
  const cfg = data.config || data;
  const root = $("#config-fields");
  root.replaceChildren();
  configFields(cfg, "", root);
}

async function loadBackups() {
  const data = await api("GET", "/api/v1/config/backups");
  $("#backups tbody").replaceChildren(...data.backups.map((b) => el("tr", { "data-id": b.id },
    el("td", {}, el("code", { text: b.id })), el("td", { text: when(b.created) }),
    el("td", {}, el("button", { type: "button", class: "secondary restore", "data-id": b.id }, "Restore")))));
}

async function loadKeys() {
  const data = await api("GET", "/api/v1/auth/keys");
  $("#keys tbody").replaceChildren(...data.keys.map((k) => el("tr", { "data-id": k.id },
    el("td", { text: k.name }), el("td", { text: k.scope }), el("td", {}, el("code", { text: k.prefix || "" })),
    el("td", { text: when(k.last_used) }),
    el("td", {}, el("button", { type: "button", class: "secondary revoke", "data-id": k.id }, "Revoke")))));
}

function initSettings() {
  const fail = (e) => flash(e.message);
  loadConfig().catch(fail);
  loadBackups().catch(fail);
  loadKeys().catch(fail);
  $("#config-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const { config, problems } = readConfig();
    if (problems.length) return showProblems(problems);
    try {
      const r = await api("PUT", "/api/v1/config", { config });
      showProblems([]);
      const restart = r.restart_required || [];
      flash(restart.length ? `Saved. These take effect after a restart: ${restart.join(", ")}.` : "Saved and applied.", "ok");
      await Promise.all([loadConfig(), loadBackups()]);
    } catch (err) {
      if (err.data && Array.isArray(err.data.problems)) showProblems(err.data.problems);
      else showError("#config-error", err.message);
    }
  });
  $("#backups").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.restore");
    if (!b) return;
    try {
      await api("POST", `/api/v1/config/backups/${encodeURIComponent(b.dataset.id)}/restore`);
      flash(`Backup ${b.dataset.id} restored.`, "ok");
      await Promise.all([loadConfig(), loadBackups()]);
    } catch (err) { fail(err); }
  });
  $("#key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const k = await api("POST", "/api/v1/auth/keys", { name: $("#key-name").value.trim(), scope: $("#key-scope").value });
      const box = $("#key-new");
      box.replaceChildren("New key (shown once, copy it now): ", el("code", { text: k.key }));
      box.hidden = false;
      $("#key-name").value = "";
      await loadKeys();
    } catch (err) { fail(err); }
  });
  $("#keys").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.revoke");
    if (!b) return;
    try { await api("DELETE", `/api/v1/auth/keys/${encodeURIComponent(b.dataset.id)}`); await loadKeys(); } catch (err) { fail(err); }
  });
}

/* -- start ---------------------------------------------------------------------------- */

const PAGES = {
  setup: initSetup, login: initLogin, overview: initOverview, queue: initQueue,
  library: initLibrary, series: initSeries, work: initWork, settings: initSettings,
};

document.addEventListener("DOMContentLoaded", () => {
  initLogout();
  const init = PAGES[document.body.dataset.page];
  if (init) init();
});
