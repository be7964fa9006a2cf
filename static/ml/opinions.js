/* The models' advisory opinions on the adjudication page (ml serves them: GET /api/ml/pairs/<id>/opinions/).
 *
 * Nothing is fetched until the reviewer presses "Show the models' opinions"; when the page moves to another
 * pair (adjudicate.js sets #adjudicate[data-pair]), the panel closes again, so each pair is looked at before
 * its opinions are. Text only: names come from the registry and are written with textContent. */
(function () {
  "use strict";
  const panel = document.getElementById("advisory");
  const root = document.getElementById("adjudicate");
  if (!panel || !root) return;
  const button = document.getElementById("show-opinions");
  const body = document.getElementById("opinions");
  const template = panel.dataset.opinionsUrl;

  function url(pair) {
    return template.replace(/\/0\/opinions\/$/, "/" + encodeURIComponent(pair) + "/opinions/");
  }

  function describe(opinion) {
    if (opinion.prefers_expected === null || opinion.prefers_expected === undefined) {
      return "no readable answer";
    }
    const share = Math.round(opinion.prefers_expected * 100);
    if (share === 50) return "undecided (50 % for the expected image)";
    const side = share > 50 ? "the expected image" : "the other image";
    return "prefers " + side + " (" + share + " % for the expected image)";
  }

  function line(kind, opinion) {
    const item = document.createElement("li");
    const name = document.createElement("strong");
    name.textContent = opinion.name;
    item.append(kind + " ", name, ": " + describe(opinion));
    if (opinion.protocol) item.append(" · " + opinion.protocol);
    return item;
  }

  function close() {
    body.hidden = true;
    body.replaceChildren();
    button.setAttribute("aria-expanded", "false");
    button.disabled = false;
  }

  async function open() {
    button.disabled = true;
    body.hidden = false;
    body.textContent = "Loading…";
    try {
      const response = await fetch(url(root.dataset.pair), { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      const list = document.createElement("ul");
      list.id = "opinion-list";
      if (data.scorer) list.append(line("Active scorer", data.scorer));
      for (const judge of data.judges) list.append(line("LMM judge", judge));
      body.replaceChildren(list.childElementCount ? list : document.createTextNode("No model has given an opinion on this pair yet (score_pairs, judge_pairs)."));
      button.setAttribute("aria-expanded", "true");
    } catch (error) {
      body.textContent = "The opinions could not be loaded (" + error.message + ").";
      button.disabled = false;
    }
  }

  button.addEventListener("click", open);
  new MutationObserver(close).observe(root, { attributes: true, attributeFilter: ["data-pair"] });
})();
