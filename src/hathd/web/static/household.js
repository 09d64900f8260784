/* hathd web pages: media-server refresh on the overview, the notification test on the
   settings page. Vanilla JS, no inline script (CSP); uses the helpers of hathd.js. */
"use strict";

(() => {
  async function loadMedia() {
    const dl = $("#media");
    let s;
    try {
      s = await api("GET", "/api/v1/media-servers/status");
    } catch (err) {
      facts(dl, [["State", err.status === 404 ? "no media server configured" : err.message]]);
      return;
    }
    const pairs = [["waiting folders", s.pending], ["refreshes queued", s.submitted]];
    for (const [name, srv] of Object.entries(s.servers)) {
      pairs.push([`${name} (${srv.kind})`, `${srv.refreshed} refreshed, ${srv.failed} failed`]);
      if (srv.last_error) pairs.push([`${name} last error`, `${srv.last_error} (${when(srv.last_error_at)})`]);
    }
    facts(dl, pairs);
  }

  function initNotifyTest() {
    const form = $("#notify-test");
    const out = $("#notify-result");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const kind = $("#notify-kind").value;
      out.hidden = false;
      out.textContent = "Sending…";
      try {
        const reply = await api("POST", "/api/v1/notify/test", kind ? { kind } : {});
        out.textContent = reply.results.length
          ? reply.results.map((r) => `${r.kind}: ${r.ok ? "sent" : `failed (${r.error})`}`).join("; ")
          : "No event kind has a URL: set [notify.<kind>] urls first.";
      } catch (err) {
        out.textContent = err.message;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const page = document.body.dataset.page;
    if (page === "overview" && $("#media")) {
      loadMedia();
      setInterval(() => loadMedia().catch(() => {}), 15000);
    }
    if (page === "settings" && $("#notify-test")) initNotifyTest();
  });
})();
