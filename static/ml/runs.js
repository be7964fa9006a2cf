/* Live runs: on the runs list, queued and running rows follow the API; on a run's page, status,
   progress, log tail and plots do, and the page reloads once the run has finished. */
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

  function show(root, run) {
    root.dataset.status = run.status;
    const status = root.querySelector(".run-status");
    status.textContent = run.status;
    status.className = `run-status ${run.status}`;
    const percent = Math.round(run.progress * 100);
    root.querySelector(".run-progress").value = percent;
    root.querySelector(".run-percent").textContent = `${percent}%`;
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
    window.mlPlots.draw(plots, JSON.parse(document.getElementById("run-plot-data").textContent));
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
      log.textContent = run.log_tail;
      if (atEnd) log.scrollTop = log.scrollHeight;
      window.mlPlots.draw(plots, run.plots);
      return true;
    });
  }

  const table = document.getElementById("runs");
  if (table) followList(table);
  const run = document.getElementById("run");
  if (run) followRun(run);
})();
