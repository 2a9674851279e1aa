/* Copy buttons beside shortened ids in the registry's lists (the whole id is in the
   button's data-copy-value). A static file: the CSP refuses inline scripts. */
(function () {
  "use strict";

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    document.body.removeChild(area);
  }

  function done(button) {
    var label = button.textContent;
    button.textContent = "Copied";
    button.classList.add("copied");
    window.setTimeout(function () {
      button.textContent = label;
      button.classList.remove("copied");
    }, 1500);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy-id");
    if (!button) { return; }
    event.preventDefault();
    var text = button.dataset.copyValue;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(button); });
    } else {
      fallbackCopy(text);
      done(button);
    }
  });
})();
