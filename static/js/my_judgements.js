/*
 * "My recent judgements": undo one judgement by id through the queue API (/api/judgements/undo/,
 * curation/api_judging.py), then go to the annotate page, where the pair is leased to you again.
 */
(function () {
  "use strict";

  const status = document.getElementById("undo-status");
  const annotateUrl = document.getElementById("annotate-url").dataset.url;

  async function undo(form) {
    const button = form.querySelector("button");
    button.disabled = true;
    let response;
    try {
      response = await fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value,
          "Content-Type": "application/json",
          Accept: "application/json",
        },
        body: JSON.stringify({ judgement_id: Number(form.dataset.judgement) }),
      });
    } catch (error) {
      status.textContent = "Network problem (" + error.message + "). Try again.";
      button.disabled = false;
      return;
    }
    if (response.status === 200) {
      window.location.assign(annotateUrl);
      return;
    }
    const data = await response.json().catch(() => null);
    status.textContent = (data && data.detail) || "Could not undo (" + response.status + ").";
    button.disabled = false;
  }

  document.querySelectorAll("form.undo-form").forEach((form) =>
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      undo(form);
    })
  );
})();
