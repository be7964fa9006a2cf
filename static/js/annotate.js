/*
 * The annotate page: a small state machine over the queue API (annotation/api_queue.py).
 *
 * States (on #annotate[data-state]): "loading" while a lease's images load, "ready" once both
 * have loaded (choices are accepted and the judgement timer runs from here), "empty" when the
 * queue has nothing left, "error" when the session is gone. While a request is in flight every
 * key and button is ignored (`busy`), so a double press never submits twice.
 *
 * The page never learns which image is expected: the API sends only two lease-scoped URLs.
 *
 * Task guides and their reasons come with the page (one <template> per task), so a new task costs no
 * request. The progress line ("n judged today · about m left") counts locally on each judgement and
 * undo, and is read again from the server only on the heartbeat's timer, never per key press.
 */
(function () {
  "use strict";

  const HEARTBEAT_MS = 60 * 1000;
  const PROGRESS_MS = 60 * 1000;
  const KEY_CHOICES = { 1: "left", 2: "right", 3: "both", 4: "neither" };
  const CHOICE_LABELS = { left: "image 1", right: "image 2", both: "both", neither: "neither" };

  const byId = (id) => document.getElementById(id);
  const root = byId("annotate");
  const endpoints = JSON.parse(byId("annotate-endpoints").textContent);
  const filters = JSON.parse(byId("annotate-filters").textContent);
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  const taskReasons = JSON.parse(byId("annotate-reasons").textContent);
  const guideSources = {};
  document.querySelectorAll("template.guide-source").forEach((node) => (guideSources[node.dataset.task] = node));
  const ui = {
    prompt: byId("prompt"),
    task: byId("task-badge"),
    discipline: byId("discipline-badge"),
    images: { left: byId("img-left"), right: byId("img-right") },
    workspace: byId("workspace"),
    empty: byId("empty-state"),
    status: byId("status"),
    count: byId("session-count"),
    comment: byId("comment"),
    flags: Array.from(document.querySelectorAll(".flags input[type=checkbox]")),
    lightbox: byId("lightbox"),
    lightboxImg: byId("lightbox-img"),
    lightboxLabel: byId("lightbox-label"),
    help: byId("help"),
    guide: byId("guide"),
    guideTask: byId("guide-task"),
    guideText: byId("guide-text"),
    guideLink: byId("guide-link"),
    helpGuide: byId("help-guide"),
    helpGuideTask: byId("help-guide-task"),
    helpGuideText: byId("help-guide-text"),
    helpGuideLink: byId("help-guide-link"),
    judgedToday: byId("judged-today"),
    leftForYou: byId("left-for-you"),
    confidence: Array.from(document.querySelectorAll("input[name=confidence]")),
    reasons: byId("reasons"),
    reasonBoxes: byId("reason-boxes"),
  };
  let shownTask = null; // the task code whose guide and reasons are on screen

  let lease = null; // the lease payload on screen, null when none
  let busy = false;
  let readyAt = null; // performance.now() when both images had loaded

  // Per tab and per user, so a reload keeps the count but another login starts at zero.
  const countKey = "scit2i.session-count." + root.dataset.user;
  let sessionCount = Number(sessionStorage.getItem(countKey)) || 0;

  function setCount(n) {
    sessionCount = Math.max(0, n);
    sessionStorage.setItem(countKey, String(sessionCount));
    ui.count.textContent = String(sessionCount);
  }

  function setProgress(judgedToday, left) {
    ui.judgedToday.textContent = String(Math.max(0, judgedToday));
    ui.leftForYou.textContent = String(Math.max(0, left));
  }

  function bumpProgress(judged) {
    setProgress(Number(ui.judgedToday.textContent) + judged, Number(ui.leftForYou.textContent) - judged);
  }

  async function refreshProgress() {
    if (busy || document.visibilityState !== "visible") return;
    try {
      const response = await fetch(endpoints.progress, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status !== 200 || busy) return;
      const data = await response.json();
      setProgress(data.judged_today, data.left);
    } catch (error) {
      // the next tick tries again
    }
  }

  /* The guide and the reasons of a task, when the task on screen changes. */
  function showTask(code) {
    if (code === shownTask) return;
    shownTask = code;
    const guideUrl = endpoints.guide.replace("{code}", encodeURIComponent(code));
    ui.task.href = ui.guideLink.href = ui.helpGuideLink.href = guideUrl;
    const source = guideSources[code];
    const hasGuide = Boolean(source && source.content.textContent.trim());
    ui.guide.hidden = ui.helpGuide.hidden = !hasGuide;
    ui.guideTask.textContent = ui.helpGuideTask.textContent = code;
    ui.guideText.replaceChildren(...(hasGuide ? [source.content.cloneNode(true)] : []));
    ui.helpGuideText.replaceChildren(...(hasGuide ? [source.content.cloneNode(true)] : []));
    const reasons = taskReasons[code] || [];
    ui.reasonBoxes.replaceChildren(
      ...reasons.map((reason) => {
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.name = "reason";
        box.value = reason;
        label.append(box, " " + reason);
        return label;
      })
    );
    ui.reasons.hidden = reasons.length === 0;
  }

  function say(message, kind) {
    ui.status.textContent = message;
    ui.status.className = kind || "";
  }

  function endpoint(name, leaseId) {
    return endpoints[name].replace("{id}", String(leaseId));
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken, "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    return { status: response.status, data };
  }

  /* Run one user action with everything else locked out until it has finished. */
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

  /* A response we cannot continue from: stay on the pair and explain. */
  function fail(status, data) {
    if (status === 401 || status === 403) {
      root.dataset.state = "error";
      say("Your session has ended or this account may not annotate. Reload the page to log in again.", "error");
      return;
    }
    const detail = data && (data.detail || JSON.stringify(data));
    say("Something went wrong (" + status + (detail ? ": " + detail : "") + ").", "error");
  }

  function closeOverlays() {
    ui.lightbox.hidden = true;
    ui.help.hidden = true;
  }

  function showEmpty() {
    lease = null;
    delete root.dataset.leaseId;
    root.dataset.state = "empty";
    ui.workspace.hidden = true;
    ui.empty.hidden = false;
    ui.prompt.textContent = "";
    ui.task.textContent = ui.discipline.textContent = "";
    ui.guide.hidden = true;
    shownTask = null;
  }

  function show(payload) {
    lease = payload;
    readyAt = null;
    closeOverlays();
    root.dataset.leaseId = String(payload.lease_id);
    root.dataset.state = "loading";
    ui.workspace.hidden = false;
    ui.empty.hidden = true;
    ui.prompt.textContent = payload.implicit_prompt;
    ui.task.textContent = payload.task.code + " · " + payload.task.name;
    ui.discipline.textContent = payload.discipline.name;
    ui.comment.value = "";
    ui.flags.forEach((box) => (box.checked = false));
    showTask(payload.task.code);
    ui.confidence.forEach((radio) => (radio.checked = radio.value === ""));
    ui.reasonBoxes.querySelectorAll("input").forEach((box) => (box.checked = false));
    let pending = 2;
    for (const side of ["left", "right"]) {
      const img = ui.images[side];
      img.closest("figure").classList.remove("broken");
      img.onload = img.onerror = (event) => {
        if (lease !== payload) return; // a later lease replaced this one
        if (event.type === "error") {
          img.closest("figure").classList.add("broken");
          say("Image " + (side === "left" ? 1 : 2) + " did not load; you may flag it as broken.", "error");
        }
        pending -= 1;
        if (pending === 0) {
          readyAt = performance.now();
          root.dataset.state = "ready";
        }
      };
      img.src = payload[side + "_image_url"];
    }
  }

  async function loadNext() {
    const query = new URLSearchParams(filters).toString();
    const { status, data } = await post(endpoints.next + (query ? "?" + query : ""));
    if (status === 200) show(data);
    else if (status === 204) showEmpty();
    else fail(status, data);
  }

  function judge(choice) {
    if (!lease || root.dataset.state !== "ready") return;
    exclusive(async () => {
      const body = {
        choice: choice,
        comment: ui.comment.value.trim(),
        time_spent_ms: readyAt === null ? null : Math.round(performance.now() - readyAt),
      };
      ui.flags.forEach((box) => (body[box.name] = box.checked));
      const confidence = ui.confidence.find((radio) => radio.checked);
      body.confidence = confidence ? confidence.value : "";
      body.reasons = Array.from(ui.reasonBoxes.querySelectorAll("input:checked"), (box) => box.value);
      const { status, data } = await post(endpoint("judgement", lease.lease_id), body);
      if (status === 201) {
        setCount(sessionCount + 1);
        bumpProgress(1);
        say("Saved: " + CHOICE_LABELS[choice] + ".", "ok");
      } else if (status === 409 || status === 404) {
        say(data.detail + " Here is the next pair.", "warning");
      } else if (status !== 200) {
        fail(status, data);
        return;
      }
      await loadNext();
    });
  }

  function skip() {
    if (!lease) return;
    exclusive(async () => {
      const { status, data } = await post(endpoint("release", lease.lease_id));
      if (status !== 200 && status !== 409) {
        fail(status, data);
        return;
      }
      say("Skipped; that pair comes back after the rest.", "ok");
      await loadNext();
    });
  }

  function undo() {
    exclusive(async () => {
      const { status, data } = await post(endpoints.undo);
      if (status === 200) {
        setCount(sessionCount - 1);
        bumpProgress(-1);
        show(data);
        say("Undone: judge this pair again.", "ok");
      } else if (status === 404) {
        say(data.detail, "warning");
      } else {
        fail(status, data);
      }
    });
  }

  /* Keep the lease alive while the page is visible. Not exclusive: a heartbeat must never eat a
   * key press, so its answer is ignored when the lease on screen changed meanwhile. */
  async function heartbeat() {
    const current = lease;
    if (!current || busy || document.visibilityState !== "visible") return;
    let answer;
    try {
      answer = await post(endpoint("heartbeat", current.lease_id));
    } catch (error) {
      return; // the next beat tries again; the lease lasts several beats
    }
    if (lease !== current || answer.status === 200) return;
    if (answer.status === 409 || answer.status === 404) {
      say(answer.data.detail + " Here is the next pair.", "warning");
      exclusive(loadNext);
    } else {
      fail(answer.status, answer.data);
    }
  }

  function zoom(side) {
    ui.lightboxImg.src = ui.images[side].src;
    ui.lightboxImg.alt = ui.lightboxLabel.textContent = "Image " + (side === "left" ? 1 : 2);
    ui.help.hidden = true;
    ui.lightbox.hidden = false;
  }

  function toggleHelp() {
    ui.lightbox.hidden = true;
    ui.help.hidden = !ui.help.hidden;
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("textarea, select, input:not([type=checkbox]):not([type=radio])")) {
      if (event.key === "Escape") event.target.blur();
      return; // typing a comment
    }
    const key = event.key.toLowerCase();
    if (key === "escape") closeOverlays();
    else if (key === "?") toggleHelp();
    else if (event.repeat) return;
    else if (KEY_CHOICES[key]) judge(KEY_CHOICES[key]);
    else if (key === "s") skip();
    else if (key === "u") undo();
    else return;
    event.preventDefault();
  }

  document.addEventListener("keydown", onKey);
  document.querySelectorAll("[data-choice]").forEach((button) =>
    button.addEventListener("click", () => judge(button.dataset.choice))
  );
  document.querySelectorAll("[data-zoom]").forEach((button) =>
    button.addEventListener("click", () => zoom(button.dataset.zoom))
  );
  byId("skip-button").addEventListener("click", skip);
  byId("undo-button").addEventListener("click", undo);
  byId("help-button").addEventListener("click", toggleHelp);
  byId("help-close").addEventListener("click", closeOverlays);
  byId("end-session").addEventListener("submit", () => setCount(0)); // the server ends it; a new one starts at 0
  ui.lightbox.addEventListener("click", closeOverlays);
  ui.help.addEventListener("click", (event) => event.target === ui.help && closeOverlays());
  document.addEventListener("visibilitychange", heartbeat);
  setInterval(heartbeat, HEARTBEAT_MS);
  setInterval(refreshProgress, PROGRESS_MS);

  setCount(sessionCount);
  exclusive(loadNext);
})();
