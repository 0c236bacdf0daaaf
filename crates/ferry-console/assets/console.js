// Ferry console: live updates through server-sent events. An element with data-live="<url>"
// listens to that stream while it is on the page; each event's data (server-rendered HTML)
// replaces the content of the element named by data-target. The "end" event closes the
// stream. Pages read the same without this script.
(function () {
  "use strict";
  var open = [];
  function closeAll() {
    open.forEach(function (s) { s.close(); });
    open = [];
  }
  function start() {
    closeAll();
    if (!window.EventSource) { return; }
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var source = new EventSource(el.getAttribute("data-live"));
      var target = document.getElementById(el.getAttribute("data-target")) || el;
      var update = function (e) {
        target.innerHTML = e.data;
        if (window.htmx) { window.htmx.process(target); }
      };
      source.addEventListener("rows", update);
      source.addEventListener("job", update);
      source.addEventListener("end", function () {
        source.close();
        el.removeAttribute("data-live");
        el.setAttribute("data-live-ended", "true");
      });
      el.setAttribute("data-live-started", "true");
      open.push(source);
    });
  }
  document.addEventListener("DOMContentLoaded", start);
  document.addEventListener("htmx:afterSettle", start);
  window.addEventListener("pagehide", closeAll);
})();
