// llmcache dashboard: ask the server for fresh panels and swap them in, no reload.
// The panels are HTML the server rendered and escaped; nothing here builds markup.
(function () {
  "use strict";
  var refresh = Number(document.body.dataset.refreshMs) || 2000;
  var status = document.getElementById("status");
  var shown = {};  // the last HTML received per panel (the DOM's own serialisation differs)

  function show(online) {
    status.textContent = online ? "live" : "offline, retrying";
    status.className = online ? "" : "offline";
  }

  function apply(panels) {
    document.querySelectorAll("[data-panel]").forEach(function (section) {
      var name = section.dataset.panel;
      var fresh = panels[name];
      if (typeof fresh === "string" && shown[name] !== fresh) {
        section.innerHTML = fresh;
        shown[name] = fresh;
      }
    });
  }

  function poll() {
    fetch("api/panels", { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (data) { apply(data.panels); show(true); })
      .catch(function () { show(false); })
      .then(function () { window.setTimeout(poll, refresh); });
  }

  window.setTimeout(poll, refresh);
})();
