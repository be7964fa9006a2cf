/*
 * The adjudication page (templates/curation/adjudication_detail.html), as fast as annotating.
 *
 * Keys: 1 expected, 2 other, 3 both, 4 neither (each records the decision at once, with the comment typed),
 * n the next pair without deciding, + - 0 zoom, f s b flicker / swipe / side by side, ? the key list. Keys do
 * nothing while the focus is in a text field or a select (a range slider lets them through).
 *
 * A decision goes to the curation API (POST /api/curation/adjudications/, session cookie + CSRF token); the next
 * pair of the same filtered list is read from /curation/adjudication/<id>/data/ (curation/api.py ReviewItemView)
 * and drawn in place, and the address bar follows (history.pushState), so a reload shows the same pair.
 * Without script the page's form posts and redirects, as before.
 *
 * Zoom and pan are applied to both images together (one transform), so the same detail stays side by side.
 */
(function () {
  "use strict";

  const LABEL_KEYS = { 1: "expected", 2: "other", 3: "both", 4: "neither" };
  const LABEL_TEXT = { expected: "expected", other: "other", both: "both", neither: "neither" };
  const FLICKER_MS = 600;
  const ZOOM_STEP = 1.5;
  const ZOOM_MAX = 8;

  const byId = (id) => document.getElementById(id);
  const root = byId("adjudicate");
  const config = JSON.parse(byId("adjudicate-config").textContent);
  const form = byId("decision-form");
  const csrfToken = form ? form.querySelector("input[name=csrfmiddlewaretoken]").value : "";
  const compare = byId("compare");
  const images = Array.from(compare.querySelectorAll(".adj-view img"));
  const views = Array.from(compare.querySelectorAll(".adj-view"));
  const figures = { expected: byId("image-expected"), other: byId("image-other") };

  let current = { pair: config.pair, next: config.next, isGold: byId("gold-badge").hidden === false };
  let busy = false;

  function say(message, kind) {
    const status = byId("adj-status");
    status.textContent = message;
    status.className = kind || "";
  }

  function withQuery(url) {
    return config.query ? url + "?" + config.query : url;
  }

  function url(template, id) {
    return template.replace("{id}", String(id));
  }

  async function exclusive(action) {
    if (busy) return;
    busy = true;
    root.setAttribute("aria-busy", "true");
    try {
      await action();
    } catch (error) {
      say("Network problem (" + error.message + "). Try again.", "error");
    } finally {
      busy = false;
      root.removeAttribute("aria-busy");
    }
  }

  function refused(status, data) {
    if (status === 401 || status === 403) {
      say("Your session has ended or this account may not adjudicate. Reload the page to log in again.", "error");
      return;
    }
    const detail = data && (data.detail || JSON.stringify(data));
    say("Something went wrong (" + status + (detail ? ": " + detail : "") + ").", "error");
  }

  /* ---- drawing a pair ------------------------------------------------------------------------------- */

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function when(iso) {
    return iso ? iso.slice(0, 16).replace("T", " ") : "";
  }

  function fill(id, text) {
    byId(id).textContent = text || "—";
  }

  function drawFlags(data) {
    const counts = {};
    const comments = [];
    data.judgements.forEach((j) => {
      j.flags.forEach((name) => (counts[name] = (counts[name] || 0) + 1));
      if (j.comment) comments.push([j.annotator, j.comment]);
    });
    const line = byId("flag-counts");
    line.replaceChildren();
    const names = Object.keys(counts);
    if (names.length) {
      line.append(el("strong", "Flagged:"));
      names.forEach((name) => line.append(" ", el("span", name + " ×" + counts[name], "badge filter")));
    } else {
      line.textContent = "No flags.";
    }
    const list = byId("judgement-comments");
    list.replaceChildren(
      ...comments.map(([who, text]) => {
        const item = el("li");
        item.append(el("strong", who), ": " + text);
        return item;
      })
    );
  }

  function drawConsensus(data) {
    const body = byId("consensus-body");
    const c = data.consensus;
    const line = el("p");
    if (!c) {
      line.textContent = "No consensus yet.";
    } else {
      line.append(el("strong", c.outcome_display));
      let rest = c.label ? ": " + c.label_display : "";
      rest += " — " + c.n_judgements + " of " + data.k + " judgements";
      if (c.agreement !== null) rest += ", " + Math.round(c.agreement * 100) + " % agree";
      line.append(rest + ".");
    }
    body.replaceChildren(line);
  }

  function drawJudgements(data) {
    const rows = data.judgements.map((j) => {
      const row = el("tr");
      row.append(
        el("td", j.annotator, "annotator"),
        el("td", j.label, "label"),
        el("td", j.flags.join(" ")),
        el("td", j.comment),
        el("td", when(j.created_at) + (j.seconds ? " (" + j.seconds + " s)" : ""))
      );
      return row;
    });
    byId("judgement-table").querySelector("tbody").replaceChildren(...rows);
    byId("judgement-table").hidden = rows.length === 0;
    byId("no-judgements").hidden = rows.length !== 0;
    const earlier = data.adjudications.map((a) => {
      const item = el("li");
      item.append(
        el("strong", a.label_display),
        " by " + a.reviewer + ", " + when(a.created_at) + (a.comment ? ": " + a.comment : "")
      );
      return item;
    });
    byId("adjudication-list").replaceChildren(...earlier);
    byId("adjudications").hidden = earlier.length === 0;
  }

  function draw(data) {
    current = { pair: data.pair, next: data.next, isGold: data.is_gold };
    root.dataset.pair = String(data.pair);
    document.title = "Pair " + data.pair + " · Adjudication · Science-T2I curation";
    byId("pair-id").textContent = String(data.pair);
    byId("task-badge").textContent = data.task.code + " " + data.task.name;
    byId("discipline-badge").textContent = data.discipline;
    byId("gold-badge").hidden = !data.is_gold;
    byId("decision").hidden = data.is_gold;
    byId("implicit-prompt").textContent = data.prompts.implicit;
    fill("explicit-prompt", data.prompts.explicit);
    fill("superficial-prompt", data.prompts.superficial);
    byId("paraphrases").replaceChildren(el("ul"));
    byId("paraphrases").firstChild.append(...data.paraphrases.map((text) => el("li", text)));
    fill("scene", data.scene);
    fill("scene-scoring", data.scene_scoring);
    fill("real-scoring", data.real_scoring);
    images[0].src = data.images.expected;
    images[1].src = data.images.other;
    drawFlags(data);
    drawConsensus(data);
    drawJudgements(data);
    if (form) {
      form.action = withQuery(url(config.page, data.pair));
      form.reset();
    }
    resetZoom();
    preload(data.next);
  }

  /* Warm the browser's cache with the next pair's images, so that the pair after a decision draws at once.
     Its data is read again when it is shown: by then this pair's decision may have changed what comes next. */
  const preloaded = new Set();

  function preload(pairId) {
    if (pairId === null || pairId === undefined || preloaded.has(pairId)) return;
    preloaded.add(pairId);
    fetch(withQuery(url(config.data, pairId)), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : null))
      .then((data) => {
        if (!data) return;
        [data.images.expected, data.images.other].forEach((src) => (new Image().src = src));
      })
      .catch(() => {});
  }

  function finished() {
    current = { pair: null, next: null, isGold: true };
    root.dataset.state = "done";
    ["decision", "consensus", "judgements", "adjudications", "tuple"].forEach((id) => (byId(id).hidden = true));
    document.querySelector(".adj-bench").hidden = true;
    document.querySelector(".adj-head").hidden = true;
    byId("queue-done").hidden = false;
    byId("queue-done-link").focus();
  }

  async function show(pairId) {
    if (pairId === null || pairId === undefined) {
      finished();
      return;
    }
    root.dataset.state = "loading";
    const response = await fetch(withQuery(url(config.data, pairId)), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      root.dataset.state = "ready";
      refused(response.status, data);
      return;
    }
    draw(data);
    history.pushState({ pair: data.pair }, "", withQuery(url(config.page, data.pair)));
    root.dataset.state = "ready";
  }

  /* ---- deciding --------------------------------------------------------------------------------------- */

  function decide(label) {
    exclusive(async () => {
      if (current.pair === null || current.isGold) return;
      const comment = form.querySelector("textarea[name=comment]").value;
      const response = await fetch(config.decide, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken, "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ pair: current.pair, label: label, comment: comment }),
      });
      const data = await response.json().catch(() => null);
      if (response.status !== 201) {
        refused(response.status, data);
        return;
      }
      say("Pair " + current.pair + ": " + LABEL_TEXT[label] + ".", "ok");
      await show(current.next);
    });
  }

  function skip() {
    exclusive(async () => {
      if (current.next === null || current.next === undefined) {
        say("No other pair waits in this list.");
        return;
      }
      await show(current.next);
    });
  }

  if (form) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const chosen = form.querySelector("input[name=label]:checked");
      if (!chosen) {
        say("Choose a label first (or press 1–4).", "error");
        return;
      }
      decide(chosen.value);
    });
  }

  /* ---- zoom, pan, flicker and swipe --------------------------------------------------------------------- */

  const zoom = { scale: 1, x: 0, y: 0 };

  function applyZoom() {
    const limit = (v, size) => Math.max(-size * (zoom.scale - 1) / 2, Math.min(size * (zoom.scale - 1) / 2, v));
    const box = views[0].getBoundingClientRect();
    zoom.x = limit(zoom.x, box.width);
    zoom.y = limit(zoom.y, box.height);
    const transform = "translate(" + zoom.x + "px, " + zoom.y + "px) scale(" + zoom.scale + ")";
    images.forEach((img) => (img.style.transform = transform));
    byId("zoom-level").textContent = Math.round(zoom.scale * 100) + " %";
    compare.classList.toggle("zoomed", zoom.scale > 1);
  }

  function setZoom(scale) {
    const next = Math.max(1, Math.min(ZOOM_MAX, scale));
    zoom.x *= next / zoom.scale;
    zoom.y *= next / zoom.scale;
    zoom.scale = next;
    applyZoom();
  }

  function resetZoom() {
    zoom.scale = 1;
    zoom.x = zoom.y = 0;
    applyZoom();
  }

  document.querySelectorAll("[data-zoom]").forEach((button) =>
    button.addEventListener("click", () => {
      const how = button.dataset.zoom;
      if (how === "in") setZoom(zoom.scale * ZOOM_STEP);
      else if (how === "out") setZoom(zoom.scale / ZOOM_STEP);
      else resetZoom();
    })
  );

  views.forEach((view) => {
    view.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        setZoom(zoom.scale * (event.deltaY < 0 ? 1.2 : 1 / 1.2));
      },
      { passive: false }
    );
    let drag = null;
    view.addEventListener("pointerdown", (event) => {
      if (zoom.scale === 1) return;
      drag = { x: event.clientX - zoom.x, y: event.clientY - zoom.y };
      view.setPointerCapture(event.pointerId);
    });
    view.addEventListener("pointermove", (event) => {
      if (!drag) return;
      zoom.x = event.clientX - drag.x;
      zoom.y = event.clientY - drag.y;
      applyZoom();
    });
    const stop = () => (drag = null);
    view.addEventListener("pointerup", stop);
    view.addEventListener("pointercancel", stop);
  });

  let flickerTimer = null;
  const swipe = byId("swipe");

  function setMode(mode) {
    compare.dataset.mode = mode;
    document.querySelectorAll("button[data-mode]").forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
    });
    clearInterval(flickerTimer);
    flickerTimer = null;
    figures.expected.classList.remove("adj-hidden");
    figures.other.classList.remove("adj-hidden");
    figures.other.style.clipPath = "";
    byId("swipe-control").hidden = mode !== "swipe";
    byId("flicker-label").hidden = mode !== "flicker";
    if (mode === "flicker") {
      let showingOther = false;
      const tick = () => {
        figures.other.classList.toggle("adj-hidden", !showingOther);
        byId("flicker-label").textContent = showingOther ? "Other" : "Expected";
        showingOther = !showingOther;
      };
      tick();
      flickerTimer = setInterval(tick, FLICKER_MS);
    } else if (mode === "swipe") {
      applySwipe();
    }
    applyZoom();
  }

  function applySwipe() {
    figures.other.style.clipPath = "inset(0 0 0 " + swipe.value + "%)";
  }

  swipe.addEventListener("input", applySwipe);
  document.querySelectorAll("button[data-mode]").forEach((button) =>
    button.addEventListener("click", () => setMode(button.dataset.mode))
  );

  /* ---- keys --------------------------------------------------------------------------------------------- */

  const help = byId("adj-help");
  const helpButton = byId("adj-help-button");

  function toggleHelp(open) {
    help.hidden = !open;
    helpButton.setAttribute("aria-expanded", String(open));
  }

  helpButton.addEventListener("click", () => toggleHelp(help.hidden));

  function typing(target) {
    if (!target || !target.tagName) return false;
    const tag = target.tagName.toLowerCase();
    if (tag === "textarea" || tag === "select" || target.isContentEditable) return true;
    if (tag !== "input") return false;
    return !["radio", "checkbox", "button", "submit", "range"].includes((target.type || "").toLowerCase());
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const key = event.key;
    let handled = true;
    if (LABEL_KEYS[key]) {
      if (current.pair === null) say("Every pair of this list has been decided.");
      else if (current.isGold) say("Gold pairs are not adjudicated.");
      else decide(LABEL_KEYS[key]);
    } else if (key === "n" || key === "N") skip();
    else if (key === "+" || key === "=") setZoom(zoom.scale * ZOOM_STEP);
    else if (key === "-" || key === "_") setZoom(zoom.scale / ZOOM_STEP);
    else if (key === "0") resetZoom();
    else if (key === "f") setMode("flicker");
    else if (key === "s") setMode("swipe");
    else if (key === "b") setMode("side");
    else if (key === "?") toggleHelp(help.hidden);
    else if (key === "Escape") toggleHelp(false);
    else handled = false;
    if (handled) event.preventDefault();
  });

  window.addEventListener("popstate", () => window.location.reload());
  preload(current.next);
  window.addEventListener("resize", applyZoom);
})();
