// ugro-monitor dashboard: keeps the page current from the change stream (/v1/stream).
// Hand-written, no dependencies; the page works without it. Only textContent and
// properties are set, never HTML, so nothing the daemon sends can become markup.
"use strict";
(function () {
  var live = document.getElementById("live");
  if (!window.EventSource) return;
  function pct(p) { return Math.round(p.percentage) + "%"; }
  function epochs(p) {
    return p.total_epochs == null ? String(p.completed_epochs) : p.completed_epochs + "/" + p.total_epochs;
  }
  function dur(s) {
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m";
    return s + "s";
  }
  var cls = { running: "ok", finished: "done", stuck: "warn", failed: "bad" };
  var stateCls = { healthy: "ok", degraded: "warn", unhealthy: "bad", unreachable: "bad" };
  function set(el, sel, text) {
    var e = el.querySelector(sel);
    if (e && e.textContent !== text) e.textContent = text;
  }
  function rows(attr) {
    var m = new Map();
    document.querySelectorAll("[data-" + attr + "]").forEach(function (el) {
      var k = el.dataset[attr];
      if (!m.has(k)) m.set(k, []);
      m.get(k).push(el);
    });
    return m;
  }
  var runs = rows("run"), nodes = rows("node");
  function onRun(r) {
    var els = runs.get(r.id);
    if (!els) return;
    els.forEach(function (el) {
      if (r.removed) { el.classList.add("muted"); return; }
      var p = r.progress, bar = el.querySelector("progress.bar");
      if (bar) bar.value = p.percentage;
      set(el, ".pct", pct(p));
      set(el, ".ep", epochs(p));
      set(el, ".eta", r.status === "running" && p.eta_seconds != null ? dur(p.eta_seconds) : "");
      set(el, ".reason", r.error || "");
      var st = el.querySelector(".st");
      if (st) { st.textContent = r.status; st.className = "badge st " + (cls[r.status] || "muted"); }
      var group = el.closest("details.group");
      if (group && group.dataset.group !== r.status) {
        var target = document.querySelector('details.group[data-group="' + r.status + '"] tbody');
        if (target) {
          target.appendChild(el);
          [[group, -1], [target.closest("details.group"), 1]].forEach(function (gd) {
            var c = gd[0].querySelector(".count");
            c.textContent = Math.max(0, (parseInt(c.textContent, 10) || 0) + gd[1]);
          });
        }
      }
      el.classList.remove("flash"); void el.offsetWidth; el.classList.add("flash");
    });
  }
  function onNode(n) {
    (nodes.get(n.name) || []).forEach(function (el) {
      if (n.removed) { el.classList.add("muted"); return; }
      var b = el.querySelector(".state");
      if (b) { b.textContent = n.state; b.className = "badge state " + (stateCls[n.state] || "muted"); }
      set(el, ".score", String(n.score));
      set(el, ".failing", (n.checks || []).filter(function (c) {
        return c.status === "fail" || c.status === "hung";
      }).map(function (c) { return c.name; }).join(", "));
    });
  }
  function onEvent(e) {
    var ul = document.getElementById("events");
    if (!ul) return;
    var li = document.createElement("li");
    li.className = e.severity;
    var t = document.createElement("time");
    t.textContent = "just now";
    var k = document.createElement("b");
    k.textContent = e.kind;
    var s = document.createElement("span");
    s.textContent = " " + e.subject + " " + e.message;
    li.append(t, " ", k, s);
    ul.prepend(li);
    while (ul.children.length > 50) ul.lastElementChild.remove();
  }
  function handler(f) {
    return function (m) { try { f(JSON.parse(m.data)); } catch (err) { /* a bad message is skipped */ } };
  }
  var es = new EventSource("/v1/stream?kinds=run,node,event");
  es.addEventListener("run", handler(onRun));
  es.addEventListener("node", handler(onNode));
  es.addEventListener("event", handler(onEvent));
  es.addEventListener("reset", function () { location.reload(); });
  es.onopen = function () { live.textContent = "live"; live.classList.add("on"); };
  es.onerror = function () { live.textContent = "reconnecting…"; live.classList.remove("on"); };
})();
