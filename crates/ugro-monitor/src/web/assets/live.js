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
      var p = r.progress, bar = el.querySelector("progress");
      var eta = r.status === "running" && p.eta_seconds != null ? dur(p.eta_seconds) : "";
      if (bar) bar.value = p.percentage;
      if (el.cells) {
        // An overview row: run, progress (bar, then the epochs as text), ETA, reason.
        var c = el.cells, ep = " " + epochs(p);
        if (c[1].lastChild && c[1].lastChild.nodeType === 3) {
          if (c[1].lastChild.data !== ep) c[1].lastChild.data = ep;
        } else c[1].append(ep);
        if (c[2].textContent !== eta) c[2].textContent = eta;
        if (c[3].textContent !== (r.error || "")) c[3].textContent = r.error || "";
      } else {
        set(el, ".pct", pct(p));
        set(el, ".ep", epochs(p));
        set(el, ".reason", r.error || "");
      }
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
  // The run page's log tail: follows /v1/logs/ID?follow=true from where the page's text ends
  // and appends each line as its own text node, keeping the last MAX_LINES.
  var MAX_LINES = 500;
  function followLog(pre) {
    var lines = pre.textContent.split("\n");
    var last = lines.pop();
    pre.textContent = "";
    lines.forEach(function (l) { pre.appendChild(document.createTextNode(l + "\n")); });
    if (last) pre.appendChild(document.createTextNode(last));
    function add(text) {
      var end = pre.lastChild, parts = text.split("\n");
      var rest = parts.pop();
      var stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      parts.forEach(function (l, i) {
        if (i === 0 && end && !end.data.endsWith("\n")) { end.data += l + "\n"; return; }
        pre.appendChild(document.createTextNode(l + "\n"));
      });
      if (rest) {
        end = pre.lastChild;
        if (parts.length === 0 && end && !end.data.endsWith("\n")) end.data += rest;
        else pre.appendChild(document.createTextNode(rest));
      }
      while (pre.childNodes.length > MAX_LINES) pre.removeChild(pre.firstChild);
      if (stick) pre.scrollTop = pre.scrollHeight;
    }
    var logs = new EventSource(pre.dataset.follow);
    logs.addEventListener("log", handler(function (c) { add(c.text); }));
    ["truncated", "rotated"].forEach(function (k) {
      logs.addEventListener(k, handler(function (s) { add("\n[log " + k + ": " + s.path + "]\n"); }));
    });
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
  var tail = document.querySelector("pre#logtail[data-follow]");
  if (tail) followLog(tail);
})();
