// rtconfig admin UI: progressive enhancement only. Every flow works as plain HTML forms; this
// adds the theme toggle, search-as-you-type, the pending-changes count, JSON validation,
// the Ctrl/Cmd-K palette, relative times, and live updates over the admin's events stream.
// No inline scripts anywhere (CSP script-src 'self'), no dependencies.
"use strict";
(function () {
  var doc = document, root = doc.documentElement, body = doc.body;
  var $ = function (sel, el) { return (el || doc).querySelector(sel); };
  var $$ = function (sel, el) { return Array.prototype.slice.call((el || doc).querySelectorAll(sel)); };

  // ---- Theme: follows prefers-color-scheme until the user picks one (kept in localStorage).
  var stored = null;
  try { stored = localStorage.getItem("rtconfig-theme"); } catch (e) { /* private mode */ }
  if (stored === "dark" || stored === "light") root.setAttribute("data-theme", stored);
  function isDark() {
    var t = root.getAttribute("data-theme");
    if (t) return t === "dark";
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }
  var themeBtn = $("#theme-toggle");
  if (themeBtn) {
    themeBtn.hidden = false;
    var syncTheme = function () { themeBtn.setAttribute("aria-pressed", isDark() ? "true" : "false"); };
    syncTheme();
    themeBtn.addEventListener("click", function () {
      var next = isDark() ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { localStorage.setItem("rtconfig-theme", next); } catch (e) { /* ignore */ }
      syncTheme();
    });
  }

  // ---- Relative times: <time datetime title> text refreshed every 30 s.
  function relative(iso) {
    var secs = Math.floor((Date.now() - Date.parse(iso)) / 1000);
    if (isNaN(secs)) return null;
    if (secs < 5) return "just now";
    if (secs < 60) return secs + " s ago";
    if (secs < 3600) return Math.floor(secs / 60) + " min ago";
    if (secs < 86400) return Math.floor(secs / 3600) + " h ago";
    if (secs < 172800) return "yesterday";
    if (secs < 2592000) return Math.floor(secs / 86400) + " days ago";
    return iso.slice(0, 10);
  }
  function refreshTimes() {
    $$("time[datetime]").forEach(function (t) {
      var r = relative(t.getAttribute("datetime"));
      if (r) t.textContent = r;
    });
  }
  setInterval(refreshTimes, 30000);

  // ---- Configs page: search, pending changes, JSON validation.
  var form = $("#configs-form");
  var search = $("#search");
  var keys = $$(".key[data-key]");

  function valueOf(input) {
    return input.type === "checkbox" ? (input.checked ? "true" : "false") : input.value;
  }
  function isDirty(input) {
    if (input.type === "password") return input.value !== "";
    return valueOf(input) !== input.getAttribute("data-initial");
  }
  function updatePending() {
    if (!form) return;
    var n = 0;
    keys.forEach(function (k) {
      var input = $(".value-input", k);
      var dirty = !!input && isDirty(input);
      k.classList.toggle("dirty", dirty);
      if (dirty) n++;
    });
    var count = $("#pending-count");
    if (count) {
      count.textContent = n === 0 ? "No pending changes" : n === 1 ? "1 pending change" : n + " pending changes";
    }
  }
  if (form) {
    form.addEventListener("input", function (e) {
      if (e.target.matches && e.target.matches("textarea[data-type=json]")) checkJson(e.target);
      updatePending();
    });
    form.addEventListener("change", updatePending);
    form.addEventListener("submit", function (e) {
      var bad = $$("textarea[data-type=json]", form).filter(function (t) { return !checkJson(t); });
      if (bad.length) { e.preventDefault(); bad[0].focus(); }
    });
    updatePending();
  }
  function checkJson(t) {
    var err = doc.getElementById(t.id + "-jsonerror");
    var msg = "";
    if (t.value.trim() !== "" && isDirty(t)) {
      try { JSON.parse(t.value); } catch (ex) { msg = "Not valid JSON: " + ex.message; }
    }
    t.setCustomValidity(msg);
    t.setAttribute("aria-invalid", msg ? "true" : "false");
    if (err) { err.textContent = msg; err.hidden = !msg; }
    return !msg;
  }

  function applyFilter() {
    if (!search) return;
    var q = search.value.trim().toLowerCase();
    var shown = 0;
    keys.forEach(function (k) {
      var hay = (k.getAttribute("data-search") || "") + " " + valueText(k);
      var match = !q || hay.indexOf(q) !== -1;
      k.hidden = !match;
      if (match) shown++;
    });
    $$("details.group").forEach(function (g) {
      var any = $$(".key[data-key]", g).some(function (k) { return !k.hidden; });
      g.hidden = !any;
      if (q && any) g.open = true;
    });
    var status = $("#search-status");
    if (status) status.textContent = q ? shown + " of " + keys.length + " keys match" : "";
    try {
      var url = new URL(window.location.href);
      if (q) url.searchParams.set("q", search.value); else url.searchParams.delete("q");
      history.replaceState(null, "", url.toString());
    } catch (e) { /* ignore */ }
  }
  function valueText(k) {
    var input = $(".value-input", k);
    if (input && input.type !== "password") return valueOf(input).toLowerCase();
    var ro = $("[data-field=value]", k);
    return ro ? ro.textContent.toLowerCase() : "";
  }
  if (search) {
    search.addEventListener("input", applyFilter);
    if (search.value) applyFilter();
  }

  // ---- Keyboard: "/" focuses the search, Ctrl/Cmd-K opens the palette.
  doc.addEventListener("keydown", function (e) {
    var tag = (e.target && e.target.tagName) || "";
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(tag) || (e.target && e.target.isContentEditable);
    if ((e.ctrlKey || e.metaKey) && (e.key === "k" || e.key === "K")) {
      e.preventDefault();
      openPalette();
    } else if (e.key === "/" && !typing && search) {
      e.preventDefault();
      search.focus();
      search.select();
    }
  });

  // ---- Copy buttons (the new API token): button[data-copy=ID] copies #ID's value.
  $$("button[data-copy]").forEach(function (btn) {
    btn.hidden = false;
    btn.addEventListener("click", function () {
      var src = doc.getElementById(btn.getAttribute("data-copy"));
      if (!src) return;
      src.select();
      var done = function () { btn.textContent = "Copied"; };
      if (navigator.clipboard) navigator.clipboard.writeText(src.value).then(done, function () { doc.execCommand("copy"); done(); });
      else { doc.execCommand("copy"); done(); }
    });
  });
  // ---- Revoke forms ask once more in a dialog (the page itself is the no-JS confirm step).
  $$("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) { if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault(); });
  });

  // ---- Command palette: jump to a page or a key.
  var palette = null, paletteInput = null, paletteList = null, items = [], selected = 0;
  function paletteItems() {
    var out = [];
    $$(".nav a").forEach(function (a) { out.push({ label: a.textContent.trim(), kind: "page", href: a.getAttribute("href") }); });
    $$("#namespaces [data-namespace] a").forEach(function (a) { out.push({ label: a.textContent.trim(), kind: "namespace", href: a.getAttribute("href") }); });
    $$("#users [data-user] a").forEach(function (a) { out.push({ label: a.textContent.trim(), kind: "user", href: a.getAttribute("href") }); });
    keys.forEach(function (k) { out.push({ label: k.getAttribute("data-key"), kind: "key", href: "#key-" + k.getAttribute("data-key"), el: k }); });
    return out;
  }
  function renderPalette() {
    var q = paletteInput.value.trim().toLowerCase();
    items = paletteItems().filter(function (it) { return !q || it.label.toLowerCase().indexOf(q) !== -1; }).slice(0, 50);
    if (selected >= items.length) selected = 0;
    paletteList.textContent = "";
    items.forEach(function (it, i) {
      var li = doc.createElement("li");
      li.id = "palette-item-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === selected ? "true" : "false");
      li.textContent = it.label;
      var kind = doc.createElement("span");
      kind.className = "kind";
      kind.textContent = it.kind;
      li.appendChild(kind);
      li.addEventListener("click", function () { go(it); });
      paletteList.appendChild(li);
    });
    paletteInput.setAttribute("aria-activedescendant", items.length ? "palette-item-" + selected : "");
  }
  function go(it) {
    palette.close();
    if (it.el) {
      if (search && it.el.hidden) { search.value = ""; applyFilter(); }
      var d = it.el.closest("details"); if (d) d.open = true;
      it.el.scrollIntoView({ block: "center" });
      var input = $(".value-input", it.el) || $("a", it.el);
      if (input) input.focus();
      history.replaceState(null, "", it.href);
    } else {
      window.location.href = it.href;
    }
  }
  function openPalette() {
    if (!palette) {
      palette = doc.createElement("dialog");
      palette.className = "palette";
      palette.setAttribute("aria-label", "Jump to a page or key");
      var label = doc.createElement("label");
      label.className = "visually-hidden";
      label.setAttribute("for", "palette-input");
      label.textContent = "Jump to";
      paletteInput = doc.createElement("input");
      paletteInput.id = "palette-input";
      paletteInput.setAttribute("role", "combobox");
      paletteInput.setAttribute("aria-expanded", "true");
      paletteInput.setAttribute("aria-controls", "palette-list");
      paletteInput.setAttribute("autocomplete", "off");
      paletteInput.placeholder = "Jump to a page or key…";
      paletteList = doc.createElement("ul");
      paletteList.id = "palette-list";
      paletteList.setAttribute("role", "listbox");
      paletteList.setAttribute("aria-label", "Matches");
      palette.appendChild(label);
      palette.appendChild(paletteInput);
      palette.appendChild(paletteList);
      body.appendChild(palette);
      paletteInput.addEventListener("input", function () { selected = 0; renderPalette(); });
      paletteInput.addEventListener("keydown", function (e) {
        if (e.key === "ArrowDown") { e.preventDefault(); selected = Math.min(selected + 1, items.length - 1); renderPalette(); }
        else if (e.key === "ArrowUp") { e.preventDefault(); selected = Math.max(selected - 1, 0); renderPalette(); }
        else if (e.key === "Enter" && items[selected]) { e.preventDefault(); go(items[selected]); }
      });
    }
    paletteInput.value = "";
    selected = 0;
    renderPalette();
    palette.showModal();
    paletteInput.focus();
  }
  var paletteBtn = $("#palette-open");
  if (paletteBtn) { paletteBtn.hidden = false; paletteBtn.addEventListener("click", openPalette); }

  // ---- Live updates: the admin's events stream (GET /api/v1/namespaces/{ns}/events).
  var ns = body.getAttribute("data-namespace");
  var live = $("#live");
  function notice(text, cls) {
    if (!live) return;
    live.textContent = "";
    live.className = "live" + (cls ? " " + cls : "");
    live.appendChild(doc.createTextNode(text));
    live.hidden = false;
  }
  function display(c) {
    if (c.value === null || c.value === undefined) return "";
    return typeof c.value === "string" ? c.value : JSON.stringify(c.value);
  }
  function refreshValues() {
    return fetch("/api/v1/namespaces/" + encodeURIComponent(ns) + "/configs", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        var ver = $("#ns-version");
        if (ver) ver.textContent = String(data.version);
        var expected = $("input[name=expected_version]");
        data.configs.forEach(function (c) {
          var k = doc.getElementById("key-" + c.key);
          if (!k) return;
          var input = $(".value-input", k);
          var dirty = input && isDirty(input);
          var shown = display(c);
          var before = k.getAttribute("data-value");
          if (before !== shown) {
            k.classList.add("changed-live");
            setTimeout(function () { k.classList.remove("changed-live"); }, 4000);
          }
          k.setAttribute("data-value", shown);
          var ro = $("[data-field=value]", k);
          if (ro) ro.textContent = c.secret ? "secret" : shown;
          var mod = $("[data-field=modified]", k);
          if (mod) mod.hidden = !c.modified;
          if (input && !dirty && !c.secret) {
            var v = input.type === "checkbox" ? (c.value ? "true" : "false") : shown;
            if (input.type === "checkbox") input.checked = !!c.value; else input.value = v;
            input.setAttribute("data-initial", v);
            var ev = $("input[name='e." + c.key + "']", k);
            if (ev) ev.value = String(c.version);
          }
        });
        if (expected) expected.value = String(data.version);
        updatePending();
      })
      .catch(function () { /* the notice stays; a reload shows the values */ });
  }
  // The fleet page (#fleet[data-fleet-ns]) asks the same stream for `fleet` events and, on
  // each, re-renders its section from the server (one fetch at a time; no polling).
  var fleetEl = $("#fleet[data-fleet-ns]");
  var fleetBusy = false, fleetAgain = false;
  function refreshFleet() {
    if (fleetBusy) { fleetAgain = true; return; }
    fleetBusy = true;
    fetch(location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var next = fresh.getElementById("fleet");
        var cur = doc.getElementById("fleet");
        if (next && cur) cur.replaceWith(doc.importNode(next, true));
        var v = fresh.getElementById("ns-version"), cv = $("#ns-version");
        if (v && cv) cv.textContent = v.textContent;
      })
      .catch(function () { /* the next event tries again */ })
      .then(function () {
        fleetBusy = false;
        if (fleetAgain) { fleetAgain = false; refreshFleet(); }
      });
  }
  if (ns && window.EventSource) {
    var es = new EventSource("/api/v1/namespaces/" + encodeURIComponent(ns) + "/events" + (fleetEl ? "?fleet=true" : ""));
    var fleetFirst = true;
    es.addEventListener("fleet", function () {
      // The first one describes what the page already shows.
      if (fleetFirst) { fleetFirst = false; return; }
      refreshFleet();
    });
    es.addEventListener("commit", function (e) {
      var ev;
      try { ev = JSON.parse(e.data); } catch (x) { return; }
      notice("version " + ev.version + " by " + ev.actor + ": " + (ev.keys || []).join(", "));
      if (form || $(".key[data-key]")) refreshValues();
    });
    es.addEventListener("revoked", function () {
      es.close();
      notice("You have been signed out (your session ended or was revoked). Sign in again to go on.", "signed-out");
      var a = doc.createElement("a");
      a.href = "/signin?next=" + encodeURIComponent(location.pathname + location.search);
      a.textContent = " Sign in";
      live.appendChild(a);
    });
  }
})();
