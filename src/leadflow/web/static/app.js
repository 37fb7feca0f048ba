// The workspace's only script of its own (Content-Security-Policy: script-src 'self', no inline script).
"use strict";

// htmx requests carry the CSRF token in a header (forms carry it in a hidden field).
document.addEventListener("htmx:configRequest", (event) => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) {
    event.detail.headers["X-CSRF-Token"] = meta.content;
  }
});

// <form data-confirm="Erase this lead?">: ask before a destructive action.
document.addEventListener(
  "submit",
  (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  },
  true,
);

// <button data-copy="text">: copy a value (a new API token, a reset link) to the clipboard.
document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
  if (button && navigator.clipboard) {
    navigator.clipboard.writeText(button.getAttribute("data-copy") || "").then(() => {
      button.textContent = "Copied";
    });
  }
});

// <time datetime="..." data-local>: show a UTC timestamp in the reader's time zone.
function localTimes(root) {
  root.querySelectorAll("time[data-local]").forEach((node) => {
    const when = new Date(node.getAttribute("datetime") || "");
    if (!Number.isNaN(when.getTime())) {
      node.textContent = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
      node.removeAttribute("data-local");
    }
  });
}
document.addEventListener("DOMContentLoaded", () => localTimes(document));
document.addEventListener("htmx:afterSwap", (event) => localTimes(event.target));
