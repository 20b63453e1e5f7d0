// Small progressive enhancements for the dashboard; every page works without them.
(function () {
  "use strict";

  // Copy buttons: <button data-copy-target="element-id">.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Fallback for plain-HTTP origins (e.g. a LAN address), where the Clipboard API is absent.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy failed")); }
    });
  }

  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var id = button.getAttribute("data-copy-target");
      var source = document.getElementById(id);
      var status = document.querySelector('[data-copy-status="' + id + '"]');
      if (!source) { return; }
      copyText(source.textContent.trim()).then(function () {
        button.textContent = "Copied";
        if (status) { status.textContent = "Copied to the clipboard."; }
      }, function () {
        // Select the text so the user can copy it by hand.
        var range = document.createRange();
        range.selectNodeContents(source);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        if (status) { status.textContent = "Press Ctrl+C (⌘C) to copy the selected key."; }
      });
    });
  });

  // The pages that show a new secret or a receipt's verification answer a POST: turn their
  // history entry into a plain GET so that reloading does not resubmit the form (and create
  // a second key, or record the verification again).
  var answersPost = document.getElementById("new-key-secret") ||
    document.getElementById("receipt-verification");
  if (answersPost && window.history.replaceState) {
    window.history.replaceState(null, "", window.location.href);
  }

  // Organisation switcher: switch as soon as another organisation is picked.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) { select.form.submit(); }
    });
  });
})();
