// The lead pages' only script (Content-Security-Policy: script-src 'self', no inline script).
"use strict";

// <select data-autosubmit>: submit its form when the choice changes (the form's button stays for
// keyboard users and browsers without script).
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target instanceof HTMLSelectElement && target.dataset.autosubmit !== undefined && target.form) {
    target.form.requestSubmit();
  }
});

// <input data-tz-offset>: the browser's time-zone offset, so a datetime-local value means local time.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("input[data-tz-offset]").forEach((input) => {
    input.value = String(new Date().getTimezoneOffset());
  });
});
