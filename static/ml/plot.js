/* Run metrics as a person reads them, no libraries: mlPlots.draw(container, plots).
   plots: [{name, x, series: [{name, points: [[x, y], ...]}]}], as ml.queries.metric_plots makes them.

   Only quantities that change get a line plot (losses, learning rate, accuracies, gradient norm, rewards,
   and any other value that moves), grouped under a heading with a named y axis and round ticks on both axes;
   counters (tuples seen, steps, epochs, ...) and values that never changed are listed as numbers, their
   latest value. */
(() => {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const H = 250, M = { top: 12, right: 14, bottom: 44, left: 66 };
  let W = 480;  // the drawing's width: 480, or the container's where that is narrower (a phone), so text keeps its size
  const COLOURS = ["#2f6fd6", "#d9482b", "#1d8a4c", "#9b4dca", "#a86f00", "#0f8b8d", "#b03a7b", "#5d6b7a"];

  // Plotted groups, in this order; a metric joins the first whose pattern matches its name.
  const GROUPS = [
    { id: "loss", title: "Losses", axis: "loss", test: /loss/i },
    { id: "lr", title: "Learning rate", axis: "learning rate", test: /(^|_)lr($|_)|learning_?rate/i },
    { id: "accuracy", title: "Accuracies", axis: "accuracy (0–1)", test: /acc|by_task|precision|recall|(^|_)f1($|_)/i },
    { id: "grad", title: "Gradient norm", axis: "gradient norm", test: /grad/i },
    { id: "reward", title: "Rewards", axis: "reward", test: /reward/i },
  ];
  const OTHER = { id: "other", title: "Other quantities", axis: null, test: /./ };
  // Counters: how much was seen or done so far. Shown as numbers, never plotted.
  const COUNTER = /(^|_)(seen|count|steps?|epochs?|images|tuples|pairs|prompts|batch|batches|samples|examples|tokens|ties|trained|n|tuple)($|_)/i;
  const X_NAMES = { step: "step", optimizer_step: "optimizer step", record: "record" };

  function svg(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    parent.appendChild(node);
    return node;
  }

  function html(name, attrs, parent, text) {
    const node = document.createElement(name);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function number(value) {
    const size = Math.abs(value);
    if (value !== 0 && (size >= 1e6 || size < 1e-3)) return value.toExponential(2).replace("e", "×10^");
    if (Number.isInteger(value)) return value.toLocaleString("en");
    return String(Number(value.toPrecision(4)));
  }

  // Round tick values (1, 2 or 5 × 10^k apart) covering [lo, hi], about `count` of them; whole numbers only
  // for an axis of whole numbers (steps).
  function ticks(lo, hi, count, whole = false) {
    const raw = (hi - lo) / count, power = 10 ** Math.floor(Math.log10(raw)), unit = raw / power;
    let stepSize = power * (unit < 1.5 ? 1 : unit < 3 ? 2 : unit < 7 ? 5 : 10);
    if (whole) stepSize = Math.max(1, Math.round(stepSize));
    const first = Math.ceil(lo / stepSize - 1e-9) * stepSize, values = [];
    for (let v = first; v <= hi + stepSize * 1e-9; v += stepSize) values.push(Number(v.toPrecision(12)));
    return values;
  }

  function tickLabel(value, all) {
    const size = Math.max(...all.map(Math.abs));
    if (size !== 0 && (size >= 1e6 || size < 1e-2)) return value.toExponential(1);
    return Number(value.toPrecision(6)).toLocaleString("en");
  }

  function extent(values) {
    let lo = Math.min(...values), hi = Math.max(...values);
    if (lo === hi) { const pad = Math.abs(lo) * 0.05 || 1; lo -= pad; hi += pad; }
    return [lo, hi];
  }

  const changes = (series) => new Set(series.points.map((p) => p[1])).size > 1;

  function groupOf(spec) {
    return GROUPS.find((group) => group.test.test(spec.name)) || null;
  }

  // "plot" (in a group) or "counter" (a number).
  function classify(spec) {
    const group = groupOf(spec);
    if (group) return { as: "plot", group };
    if (COUNTER.test(spec.name) || !spec.series.some(changes)) return { as: "counter" };
    return { as: "plot", group: OTHER };
  }

  function plot(spec, group) {
    const points = spec.series.flatMap((s) => s.points);
    const [x0, x1] = extent(points.map((p) => p[0])), [y0, y1] = extent(points.map((p) => p[1]));
    const sx = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
    const sy = (y) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);
    const xName = X_NAMES[spec.x] || spec.x, yName = group.axis || spec.name;

    const figure = html("figure", { class: "ml-plot", "data-plot": spec.name, "data-group": group.id });
    html("figcaption", {}, figure, spec.name.replaceAll("_", " "));
    const last = spec.series.map((s) => `${s.name} ${number(s.points[s.points.length - 1][1])}`).join(", ");
    const root = svg("svg", {
      viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": `${spec.name}: ${yName} by ${xName}, ${points.length} points; latest ${last}`,
    }, figure);

    const yTicks = ticks(y0, y1, 4), xTicks = ticks(x0, x1, 5, points.every((p) => Number.isInteger(p[0])));
    for (const y of yTicks) {
      svg("line", { x1: M.left, x2: W - M.right, y1: sy(y), y2: sy(y), class: "grid" }, root);
      svg("text", { x: M.left - 6, y: sy(y) + 4, "text-anchor": "end", class: "tick" }, root).textContent = tickLabel(y, yTicks);
    }
    for (const x of xTicks) {
      svg("line", { x1: sx(x), x2: sx(x), y1: H - M.bottom, y2: H - M.bottom + 4, class: "axis" }, root);
      svg("text", { x: sx(x), y: H - M.bottom + 17, "text-anchor": "middle", class: "tick" }, root).textContent = tickLabel(x, xTicks);
    }
    svg("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom, class: "axis" }, root);
    svg("line", { x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom, class: "axis" }, root);
    svg("text", { x: (M.left + W - M.right) / 2, y: H - 6, "text-anchor": "middle", class: "axis-name" }, root).textContent = xName;
    const yMid = (M.top + H - M.bottom) / 2;
    svg("text", { x: 14, y: yMid, "text-anchor": "middle", class: "axis-name", transform: `rotate(-90 14 ${yMid})` }, root)
      .textContent = yName;

    spec.series.forEach((series, index) => {
      const colour = COLOURS[index % COLOURS.length];
      const line = svg("polyline", {
        points: series.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "),
        fill: "none", stroke: colour, "stroke-width": 2, "data-series": series.name,
      }, root);
      svg("title", {}, line).textContent = series.name;
      if (series.points.length === 1) {
        const [[x, y]] = series.points;
        svg("circle", { cx: sx(x), cy: sy(y), r: 3.5, fill: colour }, root);
      }
    });

    if (spec.series.length > 1) {
      const legend = html("p", { class: "legend" }, figure);
      spec.series.forEach((series, index) => {
        const item = html("span", {}, legend, series.name);
        item.style.setProperty("--colour", COLOURS[index % COLOURS.length]);
      });
    }
    return figure;
  }

  function counters(specs) {
    const list = html("dl", { class: "counters", id: "run-counters" });
    for (const spec of specs) {
      for (const series of spec.series) {
        const name = spec.series.length > 1 || series.name !== spec.name ? `${spec.name} · ${series.name}` : spec.name;
        const item = html("div", { "data-counter": name }, list);
        html("dt", {}, item, name.replaceAll("_", " "));
        html("dd", { class: "num" }, item, number(series.points[series.points.length - 1][1]));
      }
    }
    return list;
  }

  window.mlPlots = {
    classify,
    draw(container, plots) {
      W = Math.max(280, Math.min(480, container.clientWidth || 480));
      if (!plots.length) {
        container.replaceChildren(html("p", { class: "percent" }, null, "No metrics recorded yet."));
        return;
      }
      const nodes = [], counted = [], grouped = new Map([...GROUPS, OTHER].map((g) => [g.id, []]));
      for (const spec of plots) {
        const kind = classify(spec);
        if (kind.as === "counter") counted.push(spec);
        else grouped.get(kind.group.id).push(spec);
      }
      if (counted.length) {
        const section = html("section", { class: "metric-group", "data-group": "counters", "aria-labelledby": "metrics-counters" });
        html("h3", { id: "metrics-counters" }, section, "Counters (latest)");
        section.appendChild(counters(counted));
        nodes.push(section);
      }
      for (const group of [...GROUPS, OTHER]) {
        const specs = grouped.get(group.id);
        if (!specs.length) continue;
        const section = html("section", { class: "metric-group", "data-group": group.id, "aria-labelledby": `metrics-${group.id}` });
        html("h3", { id: `metrics-${group.id}` }, section, group.title);
        const grid = html("div", { class: "plots" }, section);
        for (const spec of specs) grid.appendChild(plot(spec, group));
        nodes.push(section);
      }
      container.replaceChildren(...nodes);
    },
  };
})();
