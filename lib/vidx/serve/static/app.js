// vidx search page: plain JS, no build step, same-origin requests only.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { version: null, model: null, moments: [], playing: null, stopAt: null, busy: false };

  // ---- requests -----------------------------------------------------------------------------
  async function api(path, body) {
    const init = body === undefined
      ? { headers: { Accept: "application/json" } }
      : { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify(body) };
    const resp = await fetch(path, init);
    let data = null;
    try { data = await resp.json(); } catch (_) { /* not JSON: the status says enough */ }
    if (!resp.ok) {
      const why = data && (data.error || data.reason);
      const err = new Error(why || `${resp.status} ${resp.statusText}`);
      err.status = resp.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  // ---- messages ------------------------------------------------------------------------------
  function showError(message) {
    $("error-text").textContent = message;
    $("error").hidden = false;
  }
  function clearError() { $("error").hidden = true; $("error-text").textContent = ""; }
  function setStatus(text) { $("status").textContent = text; }

  // ---- index info ------------------------------------------------------------------------------
  async function refreshIndex() {
    try {
      const s = await api("/readyz");
      state.version = s.index_version;
      state.model = s.model_id;
      $("index-info").textContent = `index ${s.index_version} · model ${s.model_id} · ${s.vectors.toLocaleString()} clips`;
      $("index-info").classList.remove("bad");
      return true;
    } catch (err) {
      const why = (err.data && err.data.reason) || err.message;
      $("index-info").textContent = "no index loaded";
      $("index-info").classList.add("bad");
      showError(`No index is loaded: ${why}`);
      return false;
    }
  }

  // ---- formatting ------------------------------------------------------------------------------
  function clock(seconds) {
    const s = Math.max(0, seconds);
    const m = Math.floor(s / 60);
    const r = Math.round((s - 60 * m) * 10) / 10;
    const text = Number.isInteger(r) ? String(r) : r.toFixed(1);
    return `${m}:${text.padStart(text.includes(".") ? 4 : 2, "0")}`;
  }
  function spanText(m) { return `${clock(m.start_s)}–${clock(m.end_s)}`; }
  function fileName(uri) { const parts = uri.split("/"); return parts[parts.length - 1] || uri; }

  // ---- search ------------------------------------------------------------------------------
  function filters() {
    const body = { k: Number($("k").value), group: "moments" };
    const prefix = $("uri-prefix").value.trim();
    if (prefix) body.uri_prefix = prefix;
    const from = $("min-start").value, to = $("max-end").value;
    if (from !== "") body.min_start_s = Number(from);
    if (to !== "") body.max_end_s = Number(to);
    return body;
  }

  async function search(query, label) {
    if (state.busy) return;
    state.busy = true;
    document.body.classList.add("busy");
    setStatus("Searching…");
    try {
      const out = await api("/search", { ...query, ...filters() });
      clearError();
      if (out.index_version !== state.version) await refreshIndex();
      state.moments = out.results;
      render(out.results);
      const n = out.results.length;
      setStatus(n ? `${n} moment${n === 1 ? "" : "s"} ${label}` : `No moments ${label}`);
    } catch (err) {
      setStatus("");
      if (query.image) $("query-image").hidden = true;  // the server could not read it: no preview
      showError(err.status === 503 ? `No index is loaded: ${err.message}` : `Search failed: ${err.message}`);
      if (err.status === 503) refreshIndex();
    } finally {
      state.busy = false;
      document.body.classList.remove("busy");
    }
  }

  function searchText() {
    const text = $("q").value.trim();
    if (!text) { showError("Type what you are looking for, or drop an image."); $("q").focus(); return; }
    $("query-image").hidden = true;
    search({ text }, `for “${text}”`);
  }

  function searchImage(file) {
    if (!file) return;
    if (!file.type.startsWith("image/")) { showError(`${file.name} is not an image (${file.type || "unknown type"}).`); return; }
    const reader = new FileReader();
    reader.onerror = () => showError(`Cannot read ${file.name}.`);
    reader.onload = () => {
      const preview = $("query-image");
      preview.onerror = () => { preview.hidden = true; };
      preview.onload = () => { preview.hidden = false; };
      preview.src = reader.result;
      search({ image: reader.result }, `for image ${file.name}`);
    };
    reader.readAsDataURL(file);
  }

  function moreLike(m) {
    search({ clip: { video_id: m.video_id, clip_idx: m.best_clip_idx } },
           `like ${fileName(m.uri)} ${spanText(m)}`);
  }

  // ---- results ------------------------------------------------------------------------------
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function card(m, i) {
    const li = el("li", "moment");
    li.dataset.index = String(i);
    li.dataset.videoId = m.video_id;
    li.dataset.start = String(m.start_s);
    li.dataset.end = String(m.end_s);
    const play = el("button", "thumb");
    play.type = "button";
    play.setAttribute("aria-label", `Play ${fileName(m.uri)} ${spanText(m)}`);
    const img = el("img");
    img.alt = "";
    img.loading = "lazy";
    img.src = `/thumb/${encodeURIComponent(m.video_id)}/${m.best_clip_idx}?v=${encodeURIComponent(state.version || "")}`;
    img.addEventListener("error", () => { img.replaceWith(el("span", "no-thumb", "no thumbnail")); });
    play.append(img, el("span", "badge", spanText(m)));
    play.addEventListener("click", () => playMoment(i));
    const info = el("div", "info");
    const uri = el("div", "uri", fileName(m.uri));
    uri.title = m.uri;
    const facts = el("div", "facts");
    facts.append(el("span", "span", `${spanText(m)} · ${m.n_clips} clip${m.n_clips === 1 ? "" : "s"}`),
                 el("span", "score", m.score.toFixed(3)));
    const more = el("button", "more", "More like this");
    more.type = "button";
    more.addEventListener("click", () => moreLike(m));
    info.append(uri, facts, more);
    li.append(play, info);
    return li;
  }

  function render(moments) {
    const grid = $("grid");
    grid.replaceChildren(...moments.map(card));
    const first = grid.querySelector(".thumb");
    if (first && document.activeElement === document.body) first.focus();
  }

  // ---- playback ------------------------------------------------------------------------------
  function playMoment(i) {
    const m = state.moments[i];
    if (!m) return;
    const video = $("player");
    document.querySelectorAll(".moment.playing").forEach((n) => n.classList.remove("playing"));
    const node = document.querySelector(`.moment[data-index="${i}"]`);
    if (node) node.classList.add("playing");
    state.playing = m;
    state.stopAt = m.end_s;
    $("player-panel").hidden = false;
    document.body.classList.add("with-player");
    $("now-playing").textContent = `${fileName(m.uri)} · ${spanText(m)}`;
    $("now-playing").title = m.uri;
    const src = `/media/${encodeURIComponent(m.video_id)}`;
    $("open-video").href = src;
    const start = () => {
      video.currentTime = m.start_s;
      video.play().catch((err) => { if (err.name !== "AbortError") showError(`Cannot play ${m.uri}: ${err.message}`); });
    };
    if (video.dataset.videoId !== m.video_id) {
      video.dataset.videoId = m.video_id;
      video.addEventListener("loadedmetadata", start, { once: true });
      video.src = src;
    } else {
      start();
    }
  }

  function watchEnd() {
    // Stop at the moment's end: per frame where the browser offers it, else on timeupdate (~4/s).
    const video = $("player");
    const check = () => {
      if (state.stopAt !== null && video.currentTime >= state.stopAt) {
        video.pause();
        state.stopAt = null;  // pressing play again continues past the moment
      }
    };
    video.addEventListener("timeupdate", check);
    if ("requestVideoFrameCallback" in video) {
      const loop = () => { check(); video.requestVideoFrameCallback(loop); };
      video.requestVideoFrameCallback(loop);
    }
    video.addEventListener("error", () => {
      if (!video.getAttribute("src")) return;
      const code = video.error ? video.error.code : 0;
      showError(code === 4
        ? "This video cannot be played here (playback disabled on the server, or a format the browser lacks)."
        : `Playback failed (media error ${code}).`);
    });
  }

  function stopPlayback() {
    const video = $("player");
    video.pause();
    state.stopAt = null;
    $("player-panel").hidden = true;
    document.body.classList.remove("with-player");
    document.querySelectorAll(".moment.playing").forEach((n) => n.classList.remove("playing"));
  }

  // ---- keyboard ------------------------------------------------------------------------------
  function typing(target) {
    return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName));
  }

  function moveFocus(from, delta) {
    const thumbs = [...document.querySelectorAll("#grid .thumb")];
    const at = thumbs.indexOf(from);
    if (at < 0) return;
    let step = delta;
    if (Math.abs(delta) > 1) {  // up/down: one row of the grid
      const perRow = Math.max(1, Math.round($("grid").clientWidth / thumbs[0].closest(".moment").offsetWidth));
      step = Math.sign(delta) * perRow;
    }
    const next = thumbs[Math.min(thumbs.length - 1, Math.max(0, at + step))];
    if (next) next.focus();
  }

  function onKey(event) {
    if (event.key === "Escape") { stopPlayback(); return; }
    if (typing(event.target)) return;
    const card = event.target instanceof HTMLElement ? event.target.closest(".moment") : null;
    if (event.key === "/") { event.preventDefault(); $("q").focus(); $("q").select(); }
    else if (card && (event.key === "m" || event.key === "M")) { moreLike(state.moments[Number(card.dataset.index)]); }
    else if (card && event.target.classList.contains("thumb")) {
      const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 2, ArrowUp: -2 };
      if (event.key in moves) { event.preventDefault(); moveFocus(event.target, moves[event.key]); }
    }
  }

  // ---- wiring ------------------------------------------------------------------------------
  function wire() {
    $("search-form").addEventListener("submit", (e) => { e.preventDefault(); searchText(); });
    $("error-close").addEventListener("click", clearError);
    $("close-player").addEventListener("click", stopPlayback);
    $("file").addEventListener("change", (e) => { searchImage(e.target.files[0]); e.target.value = ""; });
    $("drop").addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
    });
    // Drops anywhere on the page count: aiming at the box is not needed.
    document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
    document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) document.body.classList.remove("dragging"); });
    document.addEventListener("drop", (e) => {
      e.preventDefault();
      document.body.classList.remove("dragging");
      const file = e.dataTransfer && e.dataTransfer.files[0];
      if (file) searchImage(file); else showError("Drop an image file (PNG, JPEG, WebP).");
    });
    document.addEventListener("keydown", onKey);
    watchEnd();
  }

  wire();
  refreshIndex();
  window.vidx = { state, search, playMoment };  // for tests and the console
})();
