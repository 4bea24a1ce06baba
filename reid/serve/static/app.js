// The search page of reid's HTTP service (reid/serve/app.py): drop a photo, see where else the
// person appears. Plain ES2017, no build step, nothing loaded from elsewhere.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const el = {
    stats: $("stats"), dropZone: $("drop-zone"), fileInput: $("file-input"),
    queryImage: $("query-image"), dropHint: $("drop-hint"), queryLabel: $("query-label"),
    calibrated: $("calibrated"), calibratedValue: $("calibrated-value"), manual: $("manual"),
    noThreshold: $("no-threshold"), slider: $("threshold"), sliderValue: $("threshold-value"),
    fpir: $("fpir"), pair: $("pair"), pairValue: $("pair-value"),
    k: $("k"), status: $("status"), verdict: $("verdict"), timeline: $("timeline"),
    results: $("results"), resultsHint: $("results-hint"), frameHint: $("frame-hint"),
    framePanel: $("frame-panel"), frameImage: $("frame-image"),
    frameCaption: $("frame-caption"), frameClose: $("frame-close"),
    tokenForm: $("token-form"), tokenInput: $("token-input"),
  };

  // The server's token, when it has one, is typed into #token-form and kept in this closure
  // only: never in the address (history, logs), a cookie (sent by other sites' requests too) or
  // storage. Every /api/* request carries it, and images are fetched with it rather than named
  // in <img src>. A reload asks for it again.
  let token = "";
  if (new URLSearchParams(location.search).has("token")) {
    // an old-style address: the token is not taken from it, and is wiped from the address bar
    history.replaceState(null, "", location.pathname);
  }

  const state = {
    stats: null,
    query: null,        // {file: File} or {itemId: number, label: string}
    queryUrl: null,     // object URL of the query picture
    resultUrls: [],     // object URLs of the result thumbnails (token mode)
    frameUrl: null,
    last: null,         // the last search response
    seq: 0,             // answers to superseded searches are dropped
    answered: 0,
    controller: null,
    debounce: null,
  };

  // --- requests ---------------------------------------------------------------------------

  function headers() {
    return token ? { Authorization: "Bearer " + token } : {};
  }

  async function errorMessage(response) {
    let detail = null;
    try {
      const body = await response.json();
      detail = body ? body.detail : null;
    } catch (e) { /* not JSON */ }
    if (Array.isArray(detail)) {  // a validation error: [{loc, msg}, ...]
      detail = detail.map((d) => {
        const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body").join(".") : "";
        return (where ? where + ": " : "") + (d.msg || JSON.stringify(d));
      }).join("; ");
    } else if (detail && typeof detail === "object") {
      detail = JSON.stringify(detail);
    }
    let text = detail ? String(detail) : (response.statusText || "request failed");
    if (response.status === 401) {
      text += token ? " — the token given is wrong: enter it again above"
                    : " — enter the server's token in the form above";
    }
    return text + " (HTTP " + response.status + ")";
  }

  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = Object.assign({}, opts.headers || {}, headers());
    let response;
    try {
      response = await fetch(path, opts);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new Error("The server cannot be reached (" + err.message + ").");
    }
    if (response.status === 401) askToken();
    if (!response.ok) throw new Error(await errorMessage(response));
    return response;
  }

  // Shows an image of the API in `img`: named directly without a token (the browser caches
  // it), fetched with the Authorization header otherwise. Returns the object URL made, if any.
  async function showApiImage(img, path, urls) {
    img.classList.remove("missing");
    if (!token) {
      img.onerror = () => img.classList.add("missing");
      img.src = path;
      return;
    }
    try {
      const blob = await (await api(path)).blob();
      const url = URL.createObjectURL(blob);
      if (urls) urls.push(url);
      img.src = url;
    } catch (err) {
      img.classList.add("missing");
      img.title = err.message;
    }
  }

  // --- formatting -------------------------------------------------------------------------

  function pad(n, width) {
    return String(n).padStart(width || 2, "0");
  }

  // Seconds -> HH:MM:SS.s, as the command-line tools print them.
  function clock(seconds, tenths) {
    const t = Math.round(seconds * 10);
    const h = Math.floor(t / 36000), m = Math.floor((t % 36000) / 600);
    const s = Math.floor((t % 600) / 10);
    const base = pad(h) + ":" + pad(m) + ":" + pad(s);
    return tenths === false ? base : base + "." + (t % 10);
  }

  // An ISO 8601 time -> {abs: ms since the epoch, local: ms of its wall clock read as UTC,
  // offset: minutes east of UTC or null when the text names no zone}.
  function parseIso(text) {
    const m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*(Z|[+-]\d{2}:?\d{2})?$/i
      .exec(String(text || "").trim());
    if (!m) return null;
    const ms = m[7] ? Math.round(Number("0." + m[7]) * 1000) : 0;
    const local = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6], ms);
    let offset = null;
    if (m[8]) {
      if (m[8].toUpperCase() === "Z") offset = 0;
      else {
        const digits = m[8].replace(":", "");
        offset = (digits[0] === "-" ? -1 : 1) * (Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5)));
      }
    }
    return { abs: local - (offset || 0) * 60000, local: local, offset: offset };
  }

  function zoneText(offset) {
    if (offset === null || offset === undefined) return "";
    const sign = offset < 0 ? "-" : "+", a = Math.abs(offset);
    return sign + pad(Math.floor(a / 60)) + ":" + pad(a % 60);
  }

  // ms of a wall clock read as UTC -> {date: YYYY-MM-DD, time: HH:MM:SS.s}
  function wallParts(localMs, tenths) {
    const d = new Date(Math.round(localMs / 100) * 100);
    const time = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
    return {
      date: d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()),
      time: tenths === false ? time : time + "." + Math.floor(d.getUTCMilliseconds() / 100),
    };
  }

  // When an appearance was seen, for its card: wall clock when known, else the video's clock.
  function whenText(a, withDate) {
    const s = parseIso(a.started_at), e = parseIso(a.ended_at);
    if (s) {
      const from = wallParts(s.local), to = e ? wallParts(e.local) : null;
      let text = (withDate ? from.date + " " : "") + from.time;
      if (to && a.track !== null) text += "–" + (to.date !== from.date ? to.date + " " : "") + to.time;
      return text;
    }
    if (a.track === null || a.track === undefined) return "";
    return clock(a.start) + "–" + clock(a.end);
  }

  function fmtScore(x) {
    return typeof x === "number" ? x.toFixed(3) : "–";
  }

  function baseName(path) {
    return String(path || "").split(/[\\/]/).pop();
  }

  function node(tag, attrs, children) {
    const n = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") n.className = value;
      else if (key === "text") n.textContent = value;
      else if (key.startsWith("data-")) n.setAttribute(key, String(value));
      else n.setAttribute(key, value === true ? "" : String(value));
    }
    for (const c of children || []) if (c) n.append(c);
    return n;
  }

  function plural(n, one, many) {
    return n.toLocaleString("en") + " " + (n === 1 ? one : (many || one + "s"));
  }

  // --- status -----------------------------------------------------------------------------

  function setStatus(kind, text) {
    el.status.dataset.state = kind;  // idle | busy | done | error
    el.status.textContent = text;
  }

  // --- index stats and the threshold controls ---------------------------------------------

  function renderStats(s) {
    const parts = [];
    const footage = s.kind === "footage";
    parts.push(plural(s.count || 0, footage ? "entry" : "crop", footage ? "entries" : "crops") +
               (footage ? " from footage" : ""));
    if (footage && Array.isArray(s.videos)) parts.push(plural(s.videos.length, "video"));
    const cams = Array.isArray(s.cameras) ? s.cameras : [];
    if (cams.length) {
      const shown = cams.length > 8 ? cams.slice(0, 8).join(", ") + ", …" : cams.join(", ");
      parts.push(plural(cams.length, "camera") + " (" + shown + ")");
    }
    if (s.model) parts.push("model " + shortModel(s.model) + (s.runtime ? " on " + s.runtime : ""));
    else if (s.runtime) parts.push("runtime " + s.runtime);
    if (s.threshold && typeof s.threshold.fpir === "number") {
      parts.push("answers at " + rateText(s.threshold.fpir) + " absent people reported present");
    } else if (s.threshold) {
      parts.push("match threshold " + s.threshold.value.toFixed(2) + shortOrigin(s.threshold.origin));
    } else if (s.threshold_error) {
      parts.push("no match threshold at this rate");
    } else {
      parts.push("no calibrated match threshold");
    }
    if (s.version) parts.push("index " + s.version);
    el.stats.textContent = parts.join(" · ");
    el.stats.title = (s.model ? "model " + s.model : "") +
      (s.threshold && s.threshold.origin ? "\nmatch threshold " + s.threshold.value.toFixed(4) + ": " +
       s.threshold.origin : "") + (s.threshold_error ? "\n" + s.threshold_error : "");
    el.frameHint.hidden = !footage;
  }

  // "/srv/runs/market/model (fingerprint 0123abcd, 1280-d)" -> "market/model (fingerprint ...)":
  // the server's folders say little on the page; the whole text is the line's tooltip.
  function shortModel(text) {
    const m = /^(.*?)(\s+\(.*\))?$/.exec(String(text));
    const parts = m[1].split(/[\\/]/).filter((p) => p);
    return (parts.length > 2 ? parts.slice(-2).join("/") : m[1]) + (m[2] || "");
  }

  // A threshold's origin says how it was chosen, at length ("false-match rate 0.01 per pair,
  // calibrated on validation: ..."): its first clause on the page, the rest in tooltips.
  function shortOrigin(origin) {
    return origin ? " (" + String(origin).split(",")[0] + ")" : "";
  }

  // "1 in 100" for 0.01: how the page names a false-positive identification rate.
  function rateText(fpir) {
    const n = 1 / fpir;
    return Math.abs(n - Math.round(n)) < 1e-6 ? "1 in " + Math.round(n).toLocaleString("en")
                                              : +(fpir * 100).toPrecision(3) + "%";
  }

  // The rate control holds the service's default on the first load, and the user's choice after.
  function setupRate(s) {
    if (el.fpir.dataset.chosen || typeof s.fpir !== "number") return;
    const value = String(s.fpir);
    if (![...el.fpir.options].some((o) => Number(o.value) === s.fpir)) {
      el.fpir.append(node("option", { value: value, text: rateText(s.fpir) }));
    }
    for (const o of el.fpir.options) o.selected = Number(o.value) === s.fpir;
  }

  // What the "whole gallery" choice reads: "0.93 for 1,700 crops" (the gallery's size now).
  function calibratedText(t, kind) {
    if (typeof t.fpir !== "number") return t.value.toFixed(2) + shortOrigin(t.origin);
    const size = typeof t.gallery_size === "number"
      ? " for " + plural(t.gallery_size, kind === "footage" ? "track" : "crop") : "";
    return "(" + t.value.toFixed(3) + size + ")";
  }

  function setupThreshold(s) {
    setupRate(s);
    const wasSet = el.calibrated.dataset.ready;
    if (s.threshold && typeof s.threshold.value === "number") {
      el.calibrated.disabled = false;
      if (!wasSet) el.calibrated.checked = true;
      el.calibratedValue.textContent = calibratedText(s.threshold, s.kind);
      el.calibrated.parentElement.title = s.threshold.origin || "";
      if (mode() === "auto") setSlider(s.threshold.value);
    } else if (s.threshold_error) {  // calibrated, but not for this rate: say why
      el.calibrated.disabled = false;
      el.calibratedValue.textContent = "(not at this rate)";
      el.calibrated.parentElement.title = s.threshold_error;
    } else {
      el.calibrated.disabled = true;
      el.calibrated.parentElement.title = "The index's model has no calibrated threshold.";
      el.calibratedValue.textContent = "(none for this model)";
      if (!wasSet || el.calibrated.checked) el.noThreshold.checked = true;
    }
    const gallery = (s.threshold && typeof s.threshold.fpir === "number") || !!s.threshold_error;
    el.fpir.disabled = !gallery;
    el.fpir.parentElement.title = gallery ? "" : "The index's model has no gallery-level calibration.";
    if (s.pair_threshold) {
      el.pair.disabled = false;
      el.pairValue.textContent = s.pair_threshold.value.toFixed(2) + shortOrigin(s.pair_threshold.origin);
      el.pair.parentElement.title = s.pair_threshold.origin || "";
    } else {
      el.pair.disabled = true;
      el.pairValue.textContent = "";
      el.pair.parentElement.title = "The index's model has no calibrated per-pair threshold.";
    }
    el.calibrated.dataset.ready = "1";
    syncSliderLook();
  }

  function setSlider(value) {
    el.slider.value = String(Math.min(1, Math.max(0, value)));
    el.sliderValue.textContent = Number(el.slider.value).toFixed(2);
  }

  function mode() {
    if (el.calibrated.checked) return "auto";
    if (el.pair.checked) return "pair";
    if (el.noThreshold.checked) return "none";
    return "manual";
  }

  function thresholdParam() {
    const m = mode();
    return m === "manual" ? Number(el.slider.value).toFixed(2) : m;
  }

  function syncSliderLook() {
    el.slider.parentElement.classList.toggle("inactive", mode() === "none");
    el.fpir.parentElement.classList.toggle("inactive", mode() !== "auto");
  }

  function kValue() {
    const k = Math.round(Number(el.k.value));
    return Number.isFinite(k) && k >= 1 ? Math.min(k, 100) : 10;
  }

  // --- the query --------------------------------------------------------------------------

  function showQueryPicture(file, itemId) {
    if (state.queryUrl) URL.revokeObjectURL(state.queryUrl);
    state.queryUrl = null;
    el.queryImage.hidden = false;
    el.dropZone.classList.add("has-image");
    if (file) {
      state.queryUrl = URL.createObjectURL(file);
      el.queryImage.src = state.queryUrl;
    } else {
      const urls = [];
      showApiImage(el.queryImage, "/api/items/" + itemId + "/thumbnail", urls)
        .then(() => { state.queryUrl = urls[0] || null; });
    }
  }

  function useFile(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith("image/")) {
      setStatus("error", file.name + " is not an image (" + file.type + ").");
      return;
    }
    state.query = { file: file };
    showQueryPicture(file, null);
    el.queryLabel.textContent = file.name;
    search();
  }

  function useItem(item, label) {
    state.query = { itemId: item, label: label };
    showQueryPicture(null, item);
    el.queryLabel.textContent = label;
    closeFrame();
    search();
  }

  // --- search -----------------------------------------------------------------------------

  async function search() {
    if (!state.query) return;
    clearTimeout(state.debounce);
    const seq = ++state.seq;
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;

    const form = new FormData();
    if (state.query.file) form.append("image", state.query.file, state.query.file.name || "query.jpg");
    else form.append("item_id", String(state.query.itemId));
    form.append("k", String(kValue()));
    form.append("threshold", thresholdParam());
    form.append("fpir", el.fpir.value);

    setStatus("busy", "Searching…");
    el.results.classList.add("stale");
    const started = performance.now();
    try {
      const response = await api("/api/search", { method: "POST", body: form, signal: controller.signal });
      const data = await response.json();
      if (seq !== state.seq) return;
      render(data, performance.now() - started);
      el.results.dataset.answered = String(++state.answered);  // for tests: searches shown
    } catch (err) {
      if (err.name === "AbortError" || seq !== state.seq) return;
      clearResults();
      setStatus("error", err.message);
    } finally {
      if (state.controller === controller) state.controller = null;
    }
  }

  function searchSoon() {
    clearTimeout(state.debounce);
    if (state.query) state.debounce = setTimeout(search, 300);
  }

  function clearResults() {
    for (const url of state.resultUrls) URL.revokeObjectURL(url);
    state.resultUrls = [];
    state.last = null;
    el.results.replaceChildren();
    el.results.classList.remove("stale");
    el.verdict.hidden = true;
    el.timeline.hidden = true;
    el.timeline.replaceChildren();
    el.resultsHint.hidden = true;
  }

  function render(data, ms) {
    clearResults();
    const footage = data.kind === "footage" || Array.isArray(data.appearances);
    const items = (footage ? data.appearances : data.hits) || [];
    state.last = { data: data, footage: footage, items: items };

    const days = new Set(items.map((a) => (parseIso(a.started_at) ? wallParts(parseIso(a.started_at).local).date : "")));
    const withDate = days.size > 1;
    el.results.replaceChildren(...items.map((it) => card(it, footage, withDate)));
    el.resultsHint.hidden = items.length === 0;

    // The verdict prints the threshold and the best score alike: the cards' 3 decimals, more
    // where a rejected score would read as the threshold (the server decides on unrounded
    // numbers: "1.000 is below 1.000" from a collapsed model), as reid.calibration.score_format.
    let shown = (x) => x.toFixed(3);
    if (typeof data.threshold === "number") {
      const rejected = items.filter((a) => a.match === false).map((a) => a.score);
      let digits = 3;
      while (digits <= 17 && rejected.some((s) => s.toFixed(digits) === data.threshold.toFixed(digits))) digits++;
      shown = digits <= 17 ? (x) => x.toFixed(digits) : (x) => String(x);
    }
    const t = typeof data.threshold === "number" ? shown(data.threshold) : null;
    el.verdict.title = data.threshold_origin || "";
    const text = verdictText(data, footage, items, t, shown);
    if (text !== null) {
      el.verdict.textContent = text;
      el.verdict.className = "verdict " + (data.in_gallery ? "match" : "no-match");
      el.verdict.hidden = false;
    }
    // The gallery-level threshold is read for the gallery's size at each search: show it.
    if (mode() === "auto" && t !== null && typeof data.fpir === "number") {
      el.calibratedValue.textContent = calibratedText(
        { value: data.threshold, fpir: data.fpir, gallery_size: data.gallery_size },
        footage ? "footage" : "crops");
    }

    if (footage) renderTimeline();

    const what = footage ? plural(items.length, "appearance") : plural(items.length, "result");
    const query = data.query ? " for " + data.query : "";
    setStatus("done", items.length ? what + query + " (" + Math.round(ms) + " ms)"
                                   : "No results" + query + ": the index is empty.");
  }

  // The banner: the answer, and at what rate when the threshold is set for the whole gallery
  // ("Present in the gallery, at 1 in 100 absent people reported present: ..."). A per-pair or
  // custom threshold says which results reach it, and no more. null: ranks only.
  function verdictText(data, footage, items, t, shown) {
    if (typeof data.in_gallery !== "boolean" || t === null) return null;
    const matched = items.filter((a) => a.match === true).length;
    const best = items.length ? "the best score, " + shown(items[0].score) + ", is" : "nothing scored";
    if (typeof data.fpir !== "number") {
      const origin = shortOrigin(data.threshold_origin);
      return data.in_gallery
        ? plural(matched, footage ? "appearance" : "result") + " at or above the match threshold " + t +
          origin + ": check each against the picture."
        : "No match: " + best + " below the match threshold " + t + origin + ".";
    }
    const words = typeof data.answer === "string" && data.answer ? data.answer
      : answerWords(data, footage, items);
    const rate = ", at " + rateText(data.fpir) + " absent people reported present";
    const size = typeof data.gallery_size === "number"
      ? " set for " + plural(data.gallery_size, footage ? "track" : "crop") : "";
    const detail = data.in_gallery
      ? plural(matched, footage ? "appearance" : "result") + " at or above the threshold " + t + size
      : best + " below the threshold " + t + size;
    return words.charAt(0).toUpperCase() + words.slice(1) + rate + ": " + detail + ".";
  }

  // The answer in words when the service gives none: "present in the gallery" or "not in the
  // gallery"; on footage "seen in camera A at ... and ...; in camera B at ..." (cameras in the
  // order first reached, passages in time order) or "not seen in these cameras".
  function answerWords(data, footage, items) {
    if (!footage) return data.in_gallery ? "present in the gallery" : "not in the gallery";
    const seen = items.filter((a) => a.match === true);
    if (!seen.length) return "not seen in these cameras";
    const key = (a) => (parseIso(a.started_at) ? parseIso(a.started_at).abs / 1000 : a.start || 0);
    const cameras = new Map();
    for (const a of seen.slice().sort((p, q) => key(p) - key(q))) {
      if (!cameras.has(a.camera)) cameras.set(a.camera, []);
      cameras.get(a.camera).push(whenText(a, false) || "an indexed photo");
    }
    return "seen " + [...cameras].map(([camera, when]) => "in camera " + camera + " at " +
                                       when.join(" and ")).join("; ");
  }

  function card(it, footage, withDate) {
    const judged = it.match === true ? "match" : it.match === false ? "no-match" : "unjudged";
    const img = node("img", { alt: "", loading: "lazy", width: 64, height: 128 });
    showApiImage(img, "/api/items/" + it.id + "/thumbnail", state.resultUrls);

    const lines = [];
    if (footage) {
      lines.push(node("div", { class: "where", text: "camera " + it.camera +
        (it.track !== null && it.track !== undefined ? " · track " + it.track : "") }));
      const when = whenText(it, withDate);
      if (when) lines.push(node("div", { class: "when", text: when }));
    } else {
      const where = [];
      if (it.camid !== null && it.camid !== undefined) where.push("camera " + it.camid);
      if (it.pid !== null && it.pid !== undefined) where.push("person " + it.pid);
      if (where.length) lines.push(node("div", { class: "where", text: where.join(" · ") }));
      if (it.name) lines.push(node("div", { class: "file", text: it.name }));
    }

    const badge = it.match === true ? node("span", { class: "badge match", text: "match" })
      : it.match === false ? node("span", { class: "badge no-match", text: "no match" }) : null;
    const frameButton = footage && it.has_frame
      ? node("button", { type: "button", class: "frame-button", title: "Show the whole frame", text: "frame" })
      : null;

    const label = footage ? "camera " + it.camera + (it.track !== null ? " track " + it.track : "")
                          : it.name || "entry " + it.id;
    const c = node("article", {
      class: "result " + judged, "data-id": it.id, "data-rank": it.rank, tabindex: 0,
      title: "Search with this " + (footage ? "appearance" : "image") +
             (frameButton ? " (shift-click: show its frame)" : ""),
    }, [
      node("div", { class: "thumb" }, [img, node("span", { class: "rank", text: "#" + it.rank })]),
      node("div", { class: "meta" }, [
        node("div", { class: "score-line" }, [
          node("span", { class: "score", text: fmtScore(it.score), title: "cosine similarity" }), badge]),
        ...lines,
        frameButton,
      ]),
    ]);
    c.addEventListener("click", (event) => {
      if (event.target === frameButton || (frameButton && (event.shiftKey || event.ctrlKey ||
          event.metaKey || event.altKey))) {
        event.preventDefault();
        showFrame(it);
        return;
      }
      useItem(it.id, "entry " + it.id + " (" + label + ")");
    });
    c.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        useItem(it.id, "entry " + it.id + " (" + label + ")");
      } else if ((event.key === "f" || event.key === "F") && frameButton) {
        showFrame(it);
      }
    });
    c.addEventListener("mouseenter", () => highlight(it.id, true));
    c.addEventListener("mouseleave", () => highlight(it.id, false));
    return c;
  }

  function highlight(id, on) {
    for (const n of document.querySelectorAll('[data-id="' + id + '"]')) n.classList.toggle("hover", on);
  }

  // --- the frame panel --------------------------------------------------------------------

  async function showFrame(a) {
    for (const n of document.querySelectorAll(".selected")) n.classList.remove("selected");
    for (const n of document.querySelectorAll('[data-id="' + a.id + '"]')) n.classList.add("selected");
    const where = ["camera " + a.camera];
    if (a.track !== null && a.track !== undefined) where.push("track " + a.track);
    const when = whenText(a, true);
    if (when) where.push(when);
    if (a.frame !== null && a.frame !== undefined) where.push("frame " + a.frame);
    if (a.video) where.push(baseName(a.video));
    el.frameCaption.textContent = "#" + a.rank + " · " + where.join(" · ");
    el.frameImage.removeAttribute("src");
    el.framePanel.hidden = false;
    el.frameClose.focus();
    try {
      const blob = await (await api("/api/items/" + a.id + "/frame")).blob();
      if (state.frameUrl) URL.revokeObjectURL(state.frameUrl);
      state.frameUrl = URL.createObjectURL(blob);
      el.frameImage.src = state.frameUrl;
    } catch (err) {
      closeFrame();
      setStatus("error", "No frame for entry " + a.id + ": " + err.message);
    }
  }

  function closeFrame() {
    el.framePanel.hidden = true;
    if (state.frameUrl) URL.revokeObjectURL(state.frameUrl);
    state.frameUrl = null;
  }

  // --- the per-camera timeline (footage) --------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, text) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  }

  // Every video's and appearance's span on one axis: the wall clock when every video's start
  // is known, else each video's own clock (seconds from its first frame).
  function timelineSpans() {
    const s = state.stats || {};
    const videos = Array.isArray(s.videos) ? s.videos : [];
    const wall = videos.length > 0 && videos.every((v) => parseIso(v.started_at));
    const videoStart = {};
    for (const v of videos) videoStart[v.video] = wall ? parseIso(v.started_at).abs : 0;
    const scale = wall ? 1000 : 1;  // axis unit: ms (wall) or s (video clock)
    const coverage = videos.map((v) => ({
      camera: v.camera, from: videoStart[v.video] + v.start * scale, to: videoStart[v.video] + v.end * scale,
    }));
    const bars = [];
    for (const a of state.last.items) {
      if (a.track === null || a.track === undefined) continue;  // an indexed photo, not footage
      let from = null, to = null;
      if (wall) {
        const p = parseIso(a.started_at), q = parseIso(a.ended_at);
        if (p) { from = p.abs; to = q ? q.abs : p.abs + (a.end - a.start) * 1000; }
        else if (a.video in videoStart) { from = videoStart[a.video] + a.start * 1000; to = videoStart[a.video] + a.end * 1000; }
      } else {
        from = a.start; to = a.end;
      }
      if (from !== null) bars.push({ a: a, from: from, to: to });
    }
    let offset = null;
    if (wall) offset = parseIso(videos[0].started_at).offset;
    return { wall: wall, offset: offset, coverage: coverage, bars: bars };
  }

  function niceStep(span, wanted) {
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                   10800, 21600, 43200, 86400, 172800, 604800];
    for (const step of steps) if (span / step <= wanted) return step;
    return steps[steps.length - 1] * Math.ceil(span / wanted / steps[steps.length - 1]);
  }

  function renderTimeline() {
    const box = el.timeline;
    box.replaceChildren();
    if (!state.last || !state.last.footage) { box.hidden = true; return; }
    const t = timelineSpans();
    const cams = [];
    for (const c of ((state.stats && state.stats.cameras) || [])) if (!cams.includes(c)) cams.push(c);
    for (const x of t.coverage.concat(t.bars.map((b) => ({ camera: b.a.camera })))) {
      if (!cams.includes(x.camera)) cams.push(x.camera);
    }
    if (!cams.length || (!t.bars.length && !t.coverage.length)) { box.hidden = true; return; }
    box.hidden = false;

    let lo = Infinity, hi = -Infinity;
    for (const x of t.coverage.concat(t.bars)) { lo = Math.min(lo, x.from); hi = Math.max(hi, x.to); }
    const unit = t.wall ? 1000 : 1;
    if (hi - lo < unit) hi = lo + unit;
    const spanSec = (hi - lo) / unit;

    const width = Math.max(320, box.clientWidth || 800);
    const labelW = Math.min(140, 16 + 8 * Math.max(...cams.map((c) => String(c).length)));
    const laneH = 26, top = 8, axisH = 22;
    const height = top + cams.length * laneH + axisH;
    const plotW = width - labelW - 36;  // room for the last tick's label
    const x = (v) => labelW + ((v - lo) / (hi - lo)) * plotW;

    const root = svg("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height,
                              role: "img", "aria-label": "When each appearance was seen, per camera" });
    cams.forEach((cam, i) => {
      const y = top + i * laneH;
      root.append(svg("rect", { x: labelW, y: y + 2, width: plotW, height: laneH - 4, class: "lane" }));
      root.append(svg("text", { x: labelW - 8, y: y + laneH / 2 + 4, class: "lane-label", "text-anchor": "end" },
                      String(cam)));
    });
    for (const c of t.coverage) {
      const i = cams.indexOf(c.camera);
      root.append(svg("rect", { x: x(c.from), y: top + i * laneH + 5, width: Math.max(1, x(c.to) - x(c.from)),
                                height: laneH - 10, class: "recorded" }));
    }

    // the axis
    const step = niceStep(spanSec, Math.max(2, Math.floor(plotW / 90)));
    const axisY = top + cams.length * laneH;
    const shift = t.wall ? (t.offset || 0) * 60000 : 0;  // ticks fall on round wall-clock times
    const first = Math.ceil((lo + shift) / (step * unit)) * step * unit - shift;
    for (let v = first; v <= hi + 1e-9; v += step * unit) {
      const px = x(v);
      root.append(svg("line", { x1: px, x2: px, y1: top, y2: axisY + 3, class: "tick" }));
      const label = t.wall ? wallParts(v + shift, step < 1).time : clock(v, step < 1);
      root.append(svg("text", { x: px, y: axisY + 15, class: "tick-label", "text-anchor": "middle" }, label));
    }

    // the appearances, the best drawn last (on top)
    const bars = t.bars.slice().sort((p, q) => q.a.rank - p.a.rank);
    for (const b of bars) {
      const i = cams.indexOf(b.a.camera);
      const judged = b.a.match === true ? "match" : b.a.match === false ? "no-match" : "unjudged";
      const x0 = x(b.from), w = Math.max(4, x(b.to) - x0);
      const g = svg("g", { class: "bar " + judged, "data-id": b.a.id, "data-rank": b.a.rank, tabindex: 0 });
      g.append(svg("title", {}, "#" + b.a.rank + " · camera " + b.a.camera + " · track " + b.a.track + " · " +
                   whenText(b.a, true) + " · score " + fmtScore(b.a.score) +
                   (b.a.has_frame ? " — click to see the frame" : "")));
      g.append(svg("rect", { x: x0, y: top + i * laneH + 3, width: w, height: laneH - 6, rx: 2 }));
      if (w >= 14) g.append(svg("text", { x: x0 + w / 2, y: top + i * laneH + laneH / 2 + 4, "text-anchor": "middle" },
                                String(b.a.rank)));
      g.addEventListener("click", () => {
        if (b.a.has_frame) showFrame(b.a);
        const c = el.results.querySelector('.result[data-id="' + b.a.id + '"]');
        if (c) { c.scrollIntoView({ block: "nearest", behavior: "smooth" }); c.focus({ preventScroll: true }); }
      });
      g.addEventListener("mouseenter", () => highlight(b.a.id, true));
      g.addEventListener("mouseleave", () => highlight(b.a.id, false));
      root.append(g);
    }

    let caption;
    if (t.wall) {
      const d = wallParts(lo + shift).date, e = wallParts(hi + shift).date;
      caption = "Wall clock, " + (d === e ? d : d + " to " + e) + (t.offset !== null ? " (UTC" + zoneText(t.offset) + ")" : "");
    } else {
      caption = "Time into each camera's video";
    }
    caption += " · light: recorded · green: match · grey: no match";
    box.append(node("div", { class: "timeline-caption", text: caption }), root);
  }

  // --- wiring -----------------------------------------------------------------------------

  el.fileInput.addEventListener("change", () => {
    const file = el.fileInput.files && el.fileInput.files[0];
    useFile(file);
  });

  el.dropZone.addEventListener("click", (event) => {
    if (event.target.closest("label") || event.target === el.fileInput) return;
    el.fileInput.click();
  });
  el.dropZone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); el.fileInput.click(); }
  });
  for (const type of ["dragenter", "dragover"]) {
    el.dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      el.dropZone.classList.add("dragging");
    });
  }
  el.dropZone.addEventListener("dragleave", () => el.dropZone.classList.remove("dragging"));
  el.dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    el.dropZone.classList.remove("dragging");
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) useFile(files[0]);
    else setStatus("error", "Drop an image file (from your files, not a link).");
  });
  // a file dropped beside the zone must not replace the page
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  // a pasted image is a query too
  window.addEventListener("paste", (event) => {
    const items = (event.clipboardData && event.clipboardData.files) || [];
    if (items.length) useFile(items[0]);
  });

  el.slider.addEventListener("input", () => {
    el.manual.checked = true;
    el.sliderValue.textContent = Number(el.slider.value).toFixed(2);
    syncSliderLook();
    searchSoon();
  });
  for (const radio of [el.calibrated, el.pair, el.manual, el.noThreshold]) {
    radio.addEventListener("change", () => {
      if (el.calibrated.checked && state.stats && state.stats.threshold) setSlider(state.stats.threshold.value);
      if (el.pair.checked && state.stats && state.stats.pair_threshold) setSlider(state.stats.pair_threshold.value);
      syncSliderLook();
      search();
    });
  }
  // Another rate: the whole-gallery answer at it (the threshold re-read for the header too).
  el.fpir.addEventListener("change", () => {
    el.fpir.dataset.chosen = "1";
    if (!el.calibrated.disabled) el.calibrated.checked = true;
    syncSliderLook();
    loadStats();
    search();
  });
  el.k.addEventListener("change", () => { el.k.value = String(kValue()); search(); });

  el.frameClose.addEventListener("click", closeFrame);
  el.framePanel.addEventListener("click", (event) => { if (event.target === el.framePanel) closeFrame(); });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape" && !el.framePanel.hidden) closeFrame(); });

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (state.last && state.last.footage) renderTimeline(); }, 150);
  });

  // --- the token form -----------------------------------------------------------------------

  function askToken() {
    el.tokenForm.hidden = false;
    el.tokenInput.focus();
  }

  el.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();  // never submitted: the token stays out of any address
    token = el.tokenInput.value.trim();
    el.tokenInput.value = "";
    el.tokenForm.hidden = true;
    loadStats().then(() => { if (state.stats && state.query) search(); });
  });

  el.calibrated.checked = true;
  loadStats();

  async function loadStats() {
    try {
      const rate = el.fpir.dataset.chosen ? "?fpir=" + encodeURIComponent(el.fpir.value) : "";
      const stats = await (await api("/api/stats" + rate)).json();
      state.stats = stats;
      renderStats(stats);
      setupThreshold(stats);
      if (!state.query) setStatus("idle", "Drop or choose a photo to search " + plural(stats.count || 0,
        stats.kind === "footage" ? "entry" : "crop", stats.kind === "footage" ? "entries" : "crops") + ".");
    } catch (err) {
      el.stats.textContent = "Index unavailable.";
      setStatus("error", "Cannot read the index: " + err.message);
    }
  }
})();
