/* A background job's page follows the job live: while it is queued or running, status, progress and message
   follow the jobs API (GET /api/curation/jobs/<id>/) every few seconds, announced politely to screen readers;
   once it has finished the page reloads once to show its result. Replaces a <meta refresh>, which reloaded the
   whole page (and lost the reader's place) every two seconds. */
(() => {
  "use strict";
  const root = document.getElementById("job");
  if (!root || !root.dataset.follow) return;
  const every = 1000 * Number(root.dataset.refresh || 2);
  const IN_FLIGHT = ["queued", "running"];

  async function step() {
    const response = await fetch(root.dataset.follow, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) return true; // try again next time
    const job = await response.json();
    if (!IN_FLIGHT.includes(job.status)) {
      window.location.reload();
      return false;
    }
    const percent = Math.round(100 * (job.progress || 0));
    const status = document.getElementById("job-status");
    status.textContent = job.status;
    status.className = `job-status ${job.status}`;
    root.dataset.status = job.status;
    document.getElementById("job-progress").value = percent;
    document.getElementById("job-percent").textContent = `${percent}%`;
    const message = document.getElementById("job-message");
    if (message) message.textContent = job.message || "";
    return true;
  }

  const tick = async () => {
    let again = true;
    try {
      again = await step();
    } catch (error) {
      console.warn(error);
    }
    if (again) setTimeout(tick, every);
  };
  setTimeout(tick, every);
})();
