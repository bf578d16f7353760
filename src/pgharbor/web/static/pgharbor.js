/* pgharbor dashboard: progressive enhancement only (every page reads without it).
   Times: each <time datetime=...> shows UTC; here its text becomes the viewer's local
   time, the UTC stays in its title. Copy buttons copy the text of their target. */
(function () {
  "use strict";
  function pad(n) { return String(n).padStart(2, "0"); }
  function local(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.local) { return; }
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) { return; }
      var off = -d.getTimezoneOffset();
      var sign = off >= 0 ? "+" : "-";
      off = Math.abs(off);
      el.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
        " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) +
        " " + sign + pad(Math.floor(off / 60)) + pad(off % 60);
      el.dataset.local = "1";
    });
  }
  function copying(root) {
    root.querySelectorAll("button[data-copy]").forEach(function (b) {
      b.hidden = false;
      b.addEventListener("click", function () {
        var text = document.getElementById(b.dataset.copy).textContent;
        if (navigator.clipboard) {
          navigator.clipboard.writeText(text).then(function () { b.textContent = "Copied"; });
        }
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { local(document); copying(document); });
  document.addEventListener("htmx:afterSettle", function (e) { local(e.target); });
})();
