/* The schedule form: a new kind brings its defaults (unless the parameters were edited since the last kind's
   defaults), and a generate template with a fixed seed shows a warning, every firing would make the same images,
   with a button that adds the rotating seed option to the parameters (ml.services.schedules.ROTATE_SEED). */
(() => {
  "use strict";
  const defaults = JSON.parse(document.getElementById("kind-defaults").textContent);
  const kind = document.getElementById("id_kind"), params = document.getElementById("id_params");
  const warning = document.getElementById("seed-warning"), button = document.getElementById("use-rotating-seed");
  const option = button.dataset.option;
  const parse = (text) => { try { return JSON.parse(text); } catch { return undefined; } };
  const same = (text, value) => JSON.stringify(parse(text)) === JSON.stringify(value);

  // Mirrors ml.services.schedules.repeats_itself.
  function check() {
    const value = parse(params.value);
    const rotating = value !== null && typeof value === "object" && value[option] === true;
    warning.hidden = !(kind.value === "generate" && !rotating);
  }

  let shown = kind.value;
  kind.addEventListener("change", () => {
    if (same(params.value, defaults[shown])) params.value = JSON.stringify(defaults[kind.value], null, 2);
    shown = kind.value;
    check();
  });
  params.addEventListener("input", check);
  button.addEventListener("click", () => {
    const value = parse(params.value);
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      params.focus();
      return;  // not a JSON object yet: the field's own error will say so on save
    }
    params.value = JSON.stringify({ ...value, [option]: true }, null, 2);
    check();
    params.focus();
  });
  check();
})();
