// Live updates without a reload: every element with data-refresh is fetched again every
// data-every milliseconds while the tab is visible, and replaced with what the server renders.
// A lost session sends the browser to the sign-in form.
"use strict";

function refresh(element) {
  if (document.hidden || element.dataset.busy) return;
  element.dataset.busy = "1";
  fetch(element.dataset.refresh, { credentials: "same-origin", headers: { "X-Fragment": "1" } })
    .then((reply) => {
      if (reply.status === 401) {
        window.location.assign("/dashboard/login");
        return null;
      }
      return reply.ok ? reply.text() : null;
    })
    .then((html) => {
      if (html !== null && html !== undefined) {
        element.innerHTML = html;
        element.dataset.refreshedAt = String(Date.now());
      }
    })
    .catch(() => {})
    .finally(() => {
      delete element.dataset.busy;
    });
}

document.querySelectorAll("[data-refresh]").forEach((element) => {
  const every = Number(element.dataset.every || "2000");
  window.setInterval(() => refresh(element), every);
});
