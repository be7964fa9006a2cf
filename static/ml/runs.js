/* Live runs: on the runs list, queued and running rows follow the API; on a run's page, status,
   progress and what the worker is doing (its phase: "loading the model…" rather than a bare 0 %), log tail
   and plots do, and the page reloads once the run has finished. The log is shown as ml.queries.readable_log
   shows it: progress bars in their last state, without block glyphs. */
(() => {
  "use strict";
  const IN_FLIGHT = ["queued", "running"];
  const short = (iso) => (iso ? iso.slice(0, 16).replace("T", " ") : "–");

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return response.json();
  }

  // Calls step every `every` ms while it returns true; a failed request is tried again next time.
  function poll(every, step) {
    const tick = async () => {
      let again = true;
      try { again = await step(); } catch (error) { console.warn(error); }
      if (again) setTimeout(tick, every);
    };
    setTimeout(tick, every);
  }

  // Mirrors ml.queries.readable_log (the page's first render): keep both in step.
  const STAMP = /^\d\d:\d\d:\d\d /, BAR = /(\d{1,3})%\|[^|\n]{0,400}\| */, BLOCKS = /[\u2580-\u259f]+/g;
  function barKey(line) {
    const match = BAR.exec(line);
    if (!match) return null;
    const done = /(\d+)\/(\d+|\?)/.exec(line.slice(match.index + match[0].length));
    return [line.slice(0, match.index).replace(STAMP, "").trim(), Number(done ? done[1] : match[1])];
  }
  function readableLog(text) {
    const lines = [];
    let previous = null;
    for (const raw of (text || "").split("\n")) {
      const parts = raw.split("\r").filter((part) => part.trim());
      let line = parts.length ? parts[parts.length - 1] : "";
      if (parts.length > 1 && STAMP.test(raw) && !STAMP.test(line)) line = raw.slice(0, 9) + line.trimStart();
      const key = barKey(line);
      line = line.replace(BAR, (_, percent) => `${percent}% `).replace(BLOCKS, "").trimEnd();
      if (key && previous && key[0] === previous[0] && key[1] >= previous[1] && lines.length) lines[lines.length - 1] = line;
      else lines.push(line);
      previous = key;
    }
    return lines.join("\n");
  }

  // Mirrors ml.queries.phase_text.
  function phaseText(run) {
    if (run.status === "queued") return "waiting for a GPU worker…";
    if (run.status !== "running") return "";
    if (run.phase) return `${run.phase}…`;
    return run.progress === 0 ? "starting…" : "";
  }

  function show(root, run) {
    root.dataset.status = run.status;
    const status = root.querySelector(".run-status");
    status.textContent = run.status;
    status.className = `run-status ${run.status}`;
    const percent = Math.round(run.progress * 100);
    root.querySelector(".run-progress").value = percent;
    root.querySelector(".run-percent").textContent = `${percent}%`;
    const phase = root.querySelector(".run-phase");
    if (phase) {  // "loading the model…" in place of a bare 0 %
      // The runs list's API rows carry no phase: the one the page was rendered with holds while nothing moved.
      const known = typeof run.phase === "string" ? run : { ...run, phase: run.progress === 0 ? root.dataset.phase || "" : "" };
      const text = phaseText(known);
      phase.textContent = text;
      root.querySelector(".run-percent").hidden = Boolean(text) && percent === 0;
      if (text && percent === 0) root.querySelector(".run-progress").removeAttribute("value");
      else root.querySelector(".run-progress").value = percent;
    }
    root.querySelector(".run-worker").textContent = run.worker || "–";
    root.querySelector(".run-started").textContent = short(run.started_at);
  }

  function followList(table) {
    poll(Number(table.dataset.pollMs), async () => {
      const rows = [...table.querySelectorAll("tr[data-run]")].filter((row) => IN_FLIGHT.includes(row.dataset.status));
      if (!rows.length) return false;
      const ids = rows.map((row) => row.dataset.run).join(",");
      const data = await getJSON(`${table.dataset.api}?ids=${ids}&page_size=${rows.length}`);
      for (const run of data.results) {
        const row = table.querySelector(`tr[data-run="${run.id}"]`);
        show(row, run);
        row.querySelector(".run-finished").textContent = short(run.finished_at);
      }
      return true;
    });
  }

  function followRun(section) {
    const plots = document.getElementById("run-plots");
    let shown = JSON.parse(document.getElementById("run-plot-data").textContent), width = plots.clientWidth, timer;
    window.mlPlots.draw(plots, shown);
    window.addEventListener("resize", () => {  // the plots are drawn to the width they have
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (plots.clientWidth !== width) window.mlPlots.draw(plots, shown);
        width = plots.clientWidth;
      }, 150);
    });
    if (!IN_FLIGHT.includes(section.dataset.status)) return;
    const log = document.getElementById("run-log");
    poll(Number(section.dataset.pollMs), async () => {
      const run = await getJSON(section.dataset.api);
      if (!IN_FLIGHT.includes(run.status)) {
        window.location.reload();  // the finished page: error, artifacts, output model, no cancel button
        return false;
      }
      show(section, run);
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent = readableLog(run.log_tail);
      if (atEnd) log.scrollTop = log.scrollHeight;
      shown = run.plots;
      window.mlPlots.draw(plots, shown);
      return true;
    });
  }

  const table = document.getElementById("runs");
  if (table) followList(table);
  const run = document.getElementById("run");
  if (run) followRun(run);
})();
