/* On every page. A table or preformatted block that scrolls sideways (a wide table on a phone) can be reached and
   scrolled by keyboard: it becomes focusable (tabindex 0) while, and only while, it overflows. Checked when the
   page loads, when it is resized, and when a script adds or replaces content. */
(() => {
  "use strict";
  const SELECTOR = "main table, main pre";

  function scrollsSideways(el) {
    const overflow = getComputedStyle(el).overflowX;
    return (overflow === "auto" || overflow === "scroll") && el.scrollWidth > el.clientWidth + 1;
  }

  function mark() {
    for (const el of document.querySelectorAll(SELECTOR)) {
      const ours = el.dataset.scrollRegion !== undefined;
      if (scrollsSideways(el)) {
        if (!el.hasAttribute("tabindex")) {
          el.tabIndex = 0;
          el.dataset.scrollRegion = "";
        }
      } else if (ours) {
        el.removeAttribute("tabindex");
        delete el.dataset.scrollRegion;
      }
    }
  }

  let pending = false;
  function soon() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      mark();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    mark();
    const main = document.querySelector("main");
    if (main) new MutationObserver(soon).observe(main, { childList: true, subtree: true });
  });
  window.addEventListener("load", soon);
  window.addEventListener("resize", soon);
})();
