// Runway dashboard: live updates. The page's <main data-live> names the
// event kinds (and the object) it shows; on such an event the page is
// fetched again and its <main> swapped in, keeping open logs open and
// followed. Events come from GET /api/v1/events as Server-Sent Events, or
// from its long poll (?since=N&wait=30s) where the server does not stream.
(function () {
  "use strict";
  var main = document.querySelector("main[data-live]");
  if (!main) return;
  var kinds = (main.getAttribute("data-kinds") || "").split(" ").filter(Boolean);
  var name = main.getAttribute("data-name") || "";
  var since = parseInt(main.getAttribute("data-seq") || "0", 10) || 0;
  var stateEl = document.getElementById("live-state");
  var statusEl = document.getElementById("live-status");
  var timer = null, busy = false, again = false, lastAnnounce = "";

  function setState(text, down) {
    if (!stateEl) return;
    stateEl.textContent = "Live updates: " + text;
    stateEl.classList.toggle("down", !!down);
  }

  function relevant(ev) {
    if (!ev || kinds.indexOf(ev.kind) < 0) return false;
    if (!name) return true;
    // A pipeline page also follows environment events (its staging env).
    return ev.name === name || ev.kind !== kinds[0];
  }

  function handle(ev) {
    if (typeof ev.seq === "number" && ev.seq > since) since = ev.seq;
    if (!relevant(ev)) return;
    if (ev.reason !== "StepLog") {
      lastAnnounce = (ev.name ? ev.name + ": " : "") + (ev.reason || "") + (ev.message ? " — " + ev.message : "");
    }
    schedule();
  }

  function schedule() {
    if (timer) return;
    timer = setTimeout(function () { timer = null; refresh(); }, 300);
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (resp) {
        if (resp.redirected && /\/ui\/login/.test(resp.url)) { location.href = resp.url; throw new Error("logged out"); }
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.text();
      })
      .then(swap)
      .catch(function (e) { setState("page refresh failed (" + e.message + ")", true); })
      .then(function () {
        busy = false;
        if (again) { again = false; schedule(); }
      });
  }

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.querySelector("main[data-live]");
    if (!fresh) return;
    var open = {}, pinned = {};
    main.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
    main.querySelectorAll("[id] > pre.log, details[id] pre.log").forEach(function (p) {
      var id = p.closest("[id]").id;
      pinned[id] = p.scrollTop + p.clientHeight >= p.scrollHeight - 8;
    });
    var focused = document.activeElement && document.activeElement.id;
    main.innerHTML = fresh.innerHTML;
    main.querySelectorAll("details[id]").forEach(function (d) {
      if (d.id in open) d.open = open[d.id];
    });
    main.querySelectorAll("details[id] pre.log").forEach(function (p) {
      var id = p.closest("[id]").id;
      if (pinned[id] !== false) p.scrollTop = p.scrollHeight;
    });
    if (focused) { var f = document.getElementById(focused); if (f) f.focus(); }
    setEvery(parseInt(fresh.getAttribute("data-every") || "0", 10));
    var t = doc.querySelector("title");
    if (t) document.title = t.textContent;
    if (statusEl && lastAnnounce) { statusEl.textContent = lastAnnounce; lastAnnounce = ""; }
  }

  // The stream may name its events; listen to the names it may use as
  // well as to unnamed ones.
  // (Runway names them by kind, lowercased.)
  var names = ["message", "event", "pipeline", "rollout", "environment"];

  function stream() {
    if (!window.EventSource) { poll(); return; }
    // since: what came before the page was rendered is in it already.
    var es = new EventSource("/api/v1/events?since=" + since, { withCredentials: true });
    var opened = false;
    es.onopen = function () { opened = true; setState("on"); schedule(); };
    var onEvent = function (m) {
      try { handle(JSON.parse(m.data)); } catch (e) { /* a comment or keep-alive */ }
    };
    names.forEach(function (n) { es.addEventListener(n, onEvent); });
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) {
        // Not a stream (an older server answers JSON): long-poll instead.
        es.close();
        poll();
        return;
      }
      setState(opened ? "reconnecting…" : "connecting…", true);
    };
  }

  var failures = 0;
  function poll() {
    setState("on (polling)");
    fetch("/api/v1/events?since=" + since + "&wait=30s", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) {
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.json();
      })
      .then(function (evs) {
        failures = 0;
        if (Array.isArray(evs)) evs.forEach(handle);
        setTimeout(poll, 50);
      })
      .catch(function (e) {
        failures = Math.min(failures + 1, 6);
        setState("lost (" + e.message + "), retrying", true);
        setTimeout(poll, 1000 * Math.pow(2, failures));
      });
  }

  // Some changes come without an event (measurements, and steps where
  // the server records no step events): while the server asks for it
  // (data-every), the page is also refreshed every so many seconds.
  var every = 0, ticker = null;
  function setEvery(n) {
    if (!(n > 0)) n = 0;
    if (n === every) return;
    every = n;
    if (ticker) { clearInterval(ticker); ticker = null; }
    if (n > 0) ticker = setInterval(function () { if (!document.hidden) schedule(); }, Math.max(n, 2) * 1000);
  }
  setEvery(parseInt(main.getAttribute("data-every") || "0", 10));
  stream();
})();
