/* Tiny SVG line plots of run metrics, no libraries: mlPlots.draw(container, plots).
   plots: [{name, x, series: [{name, points: [[x, y], ...]}]}], as ml.queries.metric_plots makes them. */
(() => {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const W = 460, H = 220, M = { top: 10, right: 12, bottom: 30, left: 52 };
  const COLOURS = ["#2f6fd6", "#d9482b", "#1d8a4c", "#9b4dca", "#c98a00", "#0f8b8d", "#b03a7b", "#5d6b7a"];

  function svg(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    parent.appendChild(node);
    return node;
  }

  function label(value) {
    const size = Math.abs(value);
    if (value !== 0 && (size >= 1e5 || size < 1e-3)) return value.toExponential(1);
    return String(size >= 100 ? Math.round(value) : Number(value.toPrecision(3)));
  }

  function extent(values) {
    let lo = Math.min(...values), hi = Math.max(...values);
    if (lo === hi) { const pad = Math.abs(lo) * 0.05 || 1; lo -= pad; hi += pad; }
    return [lo, hi];
  }

  function plot(spec) {
    const points = spec.series.flatMap((s) => s.points);
    const [x0, x1] = extent(points.map((p) => p[0])), [y0, y1] = extent(points.map((p) => p[1]));
    const sx = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
    const sy = (y) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);

    const figure = document.createElement("figure");
    figure.className = "ml-plot";
    figure.dataset.plot = spec.name;
    const caption = document.createElement("figcaption");
    caption.textContent = spec.name;
    figure.appendChild(caption);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${spec.name} by ${spec.x}` }, figure);

    for (let i = 0; i <= 3; i++) {
      const y = y0 + ((y1 - y0) * i) / 3, x = x0 + ((x1 - x0) * i) / 3;
      svg("line", { x1: M.left, x2: W - M.right, y1: sy(y), y2: sy(y), class: "grid" }, root);
      svg("text", { x: M.left - 6, y: sy(y) + 4, "text-anchor": "end" }, root).textContent = label(y);
      svg("text", { x: sx(x), y: H - M.bottom + 16, "text-anchor": "middle" }, root).textContent = label(x);
    }
    svg("text", { x: W - M.right, y: H - 2, "text-anchor": "end", class: "axis-name" }, root).textContent = spec.x;

    spec.series.forEach((series, index) => {
      const colour = COLOURS[index % COLOURS.length];
      const line = svg("polyline", {
        points: series.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "),
        fill: "none", stroke: colour, "stroke-width": 2, "data-series": series.name,
      }, root);
      svg("title", {}, line).textContent = series.name;
      if (series.points.length === 1) {
        const [[x, y]] = series.points;
        svg("circle", { cx: sx(x), cy: sy(y), r: 3, fill: colour }, root);
      }
    });

    if (spec.series.length > 1) {
      const legend = document.createElement("p");
      legend.className = "legend";
      spec.series.forEach((series, index) => {
        const item = document.createElement("span");
        item.style.setProperty("--colour", COLOURS[index % COLOURS.length]);
        item.textContent = series.name;
        legend.appendChild(item);
      });
      figure.appendChild(legend);
    }
    return figure;
  }

  window.mlPlots = {
    draw(container, plots) {
      if (!plots.length) {
        const empty = document.createElement("p");
        empty.className = "percent";
        empty.textContent = "No metrics recorded yet.";
        container.replaceChildren(empty);
        return;
      }
      container.replaceChildren(...plots.map(plot));
    },
  };
})();
