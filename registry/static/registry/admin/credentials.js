/* The one-time secret page: copy buttons, and a warning before leaving with the
   secret neither copied nor downloaded. A static file, so the page runs under the
   strict CSP. */
(function () {
  "use strict";
  var secretStored = false;
  var status = document.getElementById("copy-status");

  function copied(button) {
    if (button.dataset.copy === "client-secret") { secretStored = true; }
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

  var download = document.querySelector("form.configuration-download");
  var includeSecret = document.getElementById("include-secret");
  if (download && includeSecret) {
    download.addEventListener("submit", function () {
      if (includeSecret.checked) {
        secretStored = true;
        // The secret goes into one file only: the hand-off ends with this download.
        window.setTimeout(function () {
          includeSecret.checked = false;
          includeSecret.disabled = true;
        }, 0);
      }
    });
  }

  var leave = document.getElementById("stored-secret");
  leave.addEventListener("click", function (event) {
    if (leave.dataset.secretShown && !secretStored &&
        !window.confirm("You have not copied the secret. It cannot be shown again. Leave anyway?")) {
      event.preventDefault();
    }
  });
})();
