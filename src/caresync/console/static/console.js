// caresync station console: the only script. Pages refresh themselves when new work arrives (they poll
// /_state for the replica's generation), unless the clerk is typing in a form. Nothing else depends on it.
(function () {
  "use strict";
  var body = document.body;
  if (!body.dataset.signedIn) { return; }
  var seen = body.dataset.generation;
  var every = Math.max(2, parseInt(body.dataset.poll || "10", 10)) * 1000;
  var typing = false;
  document.addEventListener("input", function () { typing = true; });
  function poll() {
    fetch("/_state", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (state) {
        if (!state) { return; }
        var line = document.getElementById("sync-status");
        if (line) { line.textContent = line.dataset.label + ": " + state.sync; }
        if (String(state.generation) !== String(seen) && !typing) {
          window.location.reload();
        } else if (String(state.generation) !== String(seen)) {
          var note = document.getElementById("refreshed");
          if (note) { note.hidden = false; }
        }
      })
      .catch(function () {})
      .then(function () { window.setTimeout(poll, every); });
  }
  window.setTimeout(poll, every);
})();
// The round sheet's print button (inline handlers are not allowed by the page's security policy).
document.addEventListener("click", function (event) {
  if (event.target && event.target.hasAttribute && event.target.hasAttribute("data-print")) { window.print(); }
});
