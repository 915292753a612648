// hashdb console: small progressive enhancements; every page works without them.
"use strict";

// [data-poll]: replace the element's content with the fragment at its URL every
// data-interval ms. A fragment whose [data-state] is no longer "running" stops the
// polling of a job page; a redirect (the session ended) reloads to the login page.
function startPolling(el) {
  const url = el.dataset.poll;
  const every = parseInt(el.dataset.interval || "2000", 10);
  const tick = async () => {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
      if (response.redirected || response.status === 401 || response.status === 403) {
        window.location.reload();
        return;
      }
      if (response.ok) {
        el.innerHTML = await response.text();
        const state = el.querySelector("[data-state]");
        if (state && state.dataset.state !== "running") return;
      }
    } catch (err) {
      // The server may be restarting: try again at the next tick.
    }
    window.setTimeout(tick, every);
  };
  window.setTimeout(tick, every);
}

// [data-select-all=NAME]: a checkbox that ticks every checkbox named NAME in its form.
function wireSelectAll(box) {
  box.addEventListener("change", () => {
    box.form.querySelectorAll(`input[type=checkbox][name="${box.dataset.selectAll}"]`)
      .forEach((other) => { other.checked = box.checked; });
  });
}

// [data-dropzone]: a label for a file input that also accepts a dropped file.
function wireDropzone(zone) {
  const input = document.getElementById(zone.htmlFor);
  if (!input) return;
  const show = () => { zone.textContent = input.files.length ? `Selected: ${input.files[0].name}` : zone.dataset.text; };
  zone.dataset.text = zone.textContent;
  ["dragenter", "dragover"].forEach((e) => zone.addEventListener(e, (ev) => { ev.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((e) => zone.addEventListener(e, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    if (ev.dataTransfer && ev.dataTransfer.files.length) {
      input.files = ev.dataTransfer.files;
      show();
    }
  });
  input.addEventListener("change", show);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach(startPolling);
  document.querySelectorAll("[data-select-all]").forEach(wireSelectAll);
  document.querySelectorAll("[data-dropzone]").forEach(wireDropzone);
});
