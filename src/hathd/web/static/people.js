/* hathd web pages: requests, users and the audit log. Uses the functions of hathd.js (loaded
   first: $, el, api, flash, showError, when). No inline script (CSP). */
"use strict";

/* -- requests ------------------------------------------------------------------------- */

async function loadRequests(canDecide) {
  const data = await api("GET", "/api/v1/requests");
  $("#requests tbody").replaceChildren(...data.requests.map((r) => {
    const actions = el("td", { class: "actions" });
    if (canDecide && r.state === "pending") {
      actions.append(
        el("button", { type: "button", class: "secondary approve", "data-id": r.id }, "Approve"),
        " ",
        el("button", { type: "button", class: "secondary reject", "data-id": r.id }, "Reject"));
    }
    const decided = r.decided_by ? `${r.decided_by}, ${when(r.decided)}` : "—";
    const state = el("td", {}, el("span", { class: `state state-${r.state}`, text: r.state }));
    if (r.reason) state.append(el("div", { class: "hint", text: `reason: ${r.reason}` }));
    if (r.last_error) state.append(el("div", { class: "error-text", text: r.last_error }));
    return el("tr", { "data-id": r.id, "data-state": r.state },
      el("td", { text: r.kind }),
      el("td", {}, el("span", { text: r.target }), r.note ? el("div", { class: "hint", text: r.note }) : ""),
      state,
      el("td", { text: `${r.requested_by}, ${when(r.created)}` }),
      el("td", { text: decided }),
      actions);
  }));
}

async function initRequests() {
  const me = await api("GET", "/api/v1/auth/me");
  const canDecide = me.scope === "control" || me.scope === "admin";
  const reload = () => loadRequests(canDecide).catch((e) => flash(e.message));
  reload();
  $("#request-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const target = $("#request-target").value.trim();
    if (!target) return showError("#request-error", "Give a URL or a series key.");
    try {
      await api("POST", "/api/v1/requests", {
        kind: $("#request-kind").value, target, note: $("#request-note").value.trim(),
      });
      showError("#request-error", "");
      $("#request-target").value = "";
      $("#request-note").value = "";
      flash("Request sent: it waits for an operator's approval.", "ok");
      reload();
    } catch (err) { showError("#request-error", err.message); }
  });
  $("#requests").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.approve, button.reject");
    if (!b) return;
    const approve = b.classList.contains("approve");
    const path = `/api/v1/requests/${encodeURIComponent(b.dataset.id)}/${approve ? "approve" : "reject"}`;
    try {
      await api("POST", path, approve ? undefined : {});
      flash(approve ? `Request ${b.dataset.id} approved.` : `Request ${b.dataset.id} rejected.`, "ok");
    } catch (err) { flash(err.message); }
    reload();
  });
  $("#find-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = $("#find-text").value.trim();
    if (!text) return;
    const state = $("#find-state");
    state.textContent = "Searching…";
    try {
      const r = await api("POST", "/api/v1/anime/search", { text });
      const hits = r.results || [];
      state.textContent = hits.length ? `${hits.length} found` : "Nothing found.";
      $("#find-hits").replaceChildren(...hits.map((h) => {
        const ask = el("button", { type: "button", class: "secondary small" }, "Request");
        ask.addEventListener("click", async () => {
          try {
            await api("POST", "/api/v1/requests", { kind: "series", target: h.url || h.key, site: h.site });
            flash(`Request sent for ${h.name || h.key}: it waits for an operator's approval.`, "ok");
          } catch (err) { flash(err.message); }
          reload();
        });
        return el("li", {}, el("span", { class: "target", text: `${h.name || h.key} (${h.site})` }), ask);
      }));
    } catch (err) {
      state.textContent = err.status === 404 ? "The anime library is not enabled on this node." : err.message;
    }
  });
  setInterval(reload, 5000);
}

/* -- users ---------------------------------------------------------------------------- */

const ROLES = ["viewer", "operator", "admin"];

async function loadUsers() {
  const data = await api("GET", "/api/v1/users");
  $("#users tbody").replaceChildren(...data.users.map((u) => {
    const id = `role-${u.username}`;
    const select = el("select", { id, class: "role", "data-user": u.username, "aria-label": `role of ${u.username}` },
      ...ROLES.map((r) => el("option", { value: r, selected: r === u.role, text: r })));
    return el("tr", { "data-user": u.username },
      el("th", { scope: "row", text: u.username }),
      el("td", {}, select),
      el("td", { text: String(u.sessions) }),
      el("td", { text: String(u.keys) }),
      el("td", {},
        el("button", { type: "button", class: "secondary password", "data-user": u.username }, "New password"),
        " ",
        el("button", { type: "button", class: "secondary remove", "data-user": u.username }, "Remove")));
  }));
}

function initUsers() {
  const fail = (e) => flash(e.message);
  loadUsers().catch(fail);
  $("#user-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/v1/users", {
        username: $("#user-name").value.trim(), password: $("#user-password").value, role: $("#user-role").value,
      });
      showError("#user-error", "");
      flash(`User ${$("#user-name").value.trim()} added.`, "ok");
      $("#user-name").value = "";
      $("#user-password").value = "";
      await loadUsers();
    } catch (err) { showError("#user-error", err.message); }
  });
  $("#users").addEventListener("change", async (ev) => {
    const s = ev.target.closest("select.role");
    if (!s) return;
    try {
      await api("PATCH", `/api/v1/users/${encodeURIComponent(s.dataset.user)}`, { role: s.value });
      flash(`${s.dataset.user} is now ${s.value}.`, "ok");
    } catch (err) { fail(err); }
    await loadUsers().catch(fail);
  });
  $("#users").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button.password, button.remove");
    if (!b) return;
    const user = b.dataset.user;
    try {
      if (b.classList.contains("remove")) {
        if (!window.confirm(`Remove ${user}? Their sessions and API keys end now.`)) return;
        await api("DELETE", `/api/v1/users/${encodeURIComponent(user)}`);
        flash(`${user} removed.`, "ok");
      } else {
        const password = window.prompt(`New password for ${user} (at least 10 characters):`);
        if (!password) return;
        const r = await api("PATCH", `/api/v1/users/${encodeURIComponent(user)}`, { password });
        flash(`Password of ${user} changed; ${r.sessions_ended} session(s) ended.`, "ok");
      }
    } catch (err) { fail(err); }
    await loadUsers().catch(fail);
  });
}

/* -- the audit log -------------------------------------------------------------------- */

let auditBefore = null;

async function loadAudit(more) {
  const q = more && auditBefore ? `&before=${auditBefore}` : "";
  const data = await api("GET", `/api/v1/audit?limit=100${q}`);
  const rows = data.entries.map((e) => {
    const how = e.via === "key" ? `key ${e.key_id}` : e.via === "approval" ? `approval of request ${e.request_id} asked by ${e.on_behalf}` : e.via;
    return el("tr", { "data-id": e.id },
      el("td", { text: when(e.time) }),
      el("td", { text: `${e.user} (${how})` }),
      el("td", {}, el("code", { text: `${e.method} ${e.path}` })),
      el("td", { text: String(e.status) }),
      el("td", { text: e.address }),
      el("td", { text: e.jobs.length ? e.jobs.join(", ") : "—" }));
  });
  if (more) $("#audit tbody").append(...rows); else $("#audit tbody").replaceChildren(...rows);
  if (data.entries.length) auditBefore = data.entries[data.entries.length - 1].id;
  $("#audit-more").hidden = data.entries.length < 100;
}

function initLog() {
  loadAudit(false).catch((e) => flash(e.message));
  $("#audit-more").addEventListener("click", () => loadAudit(true).catch((e) => flash(e.message)));
}

const PEOPLE_PAGES = { requests: initRequests, users: initUsers, log: initLog };

document.addEventListener("DOMContentLoaded", () => {
  const init = PEOPLE_PAGES[document.body.dataset.page];
  if (init) Promise.resolve(init()).catch((e) => flash(e.message));
});
