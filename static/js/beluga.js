// Beluga dashboard: copy buttons, confirmations, and a reload-safe address after creating a key.
(function () {
  "use strict";

  // The new key is rendered in the response to a POST. Point the address back at the
  // dashboard so that a reload is a plain GET: it neither re-posts nor shows the key again.
  var replaceUrl = document.body.getAttribute("data-replace-url");
  if (replaceUrl && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", replaceUrl);
  }

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    return selection;
  }

  function fallbackCopy(element) {
    // Older browsers and plain-http pages have no clipboard API: select the text and ask
    // the browser to copy; the selection stays, so Ctrl+C works if that is refused too.
    selectText(element);
    try {
      return document.execCommand("copy");
    } catch (error) {
      return false;
    }
  }

  function flash(button, text) {
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.textContent = text;
    window.setTimeout(function () { button.textContent = original; }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var element = document.getElementById(button.getAttribute("data-copy-target"));
    if (!element) return;
    var text = element.textContent.trim();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { flash(button, "Copied"); },
        function () { flash(button, fallbackCopy(element) ? "Copied" : "Press Ctrl+C"); }
      );
    } else {
      flash(button, fallbackCopy(element) ? "Copied" : "Press Ctrl+C");
    }
  });

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });
})();
