/* The one-time secret page: copy buttons, and a warning before leaving with the
   secret uncopied. A static file, so the page runs under the strict CSP. */
(function () {
  "use strict";
  var secretCopied = false;
  var status = document.getElementById("copy-status");

  function copied(button) {
    if (button.dataset.copy === "client-secret") { secretCopied = true; }
    status.textContent = "Copied.";
  }

  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = document.getElementById(button.dataset.copy).textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { copied(button); });
        return;
      }
      var area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      document.body.removeChild(area);
      copied(button);
    });
  });

  document.getElementById("stored-secret").addEventListener("click", function (event) {
    if (!secretCopied && !window.confirm("You have not copied the secret. It cannot be shown again. Leave anyway?")) {
      event.preventDefault();
    }
  });
})();
