// Every form shows that it is in flight: marked busy, its buttons disabled, until the answer
// arrives (htmx forms) or the next page loads (plain forms). A form whose answer is a download
// (the page stays) or a page restored from the back/forward cache is usable again.
function busy(form, on) {
  form.setAttribute("aria-busy", on ? "true" : "false");
  form.querySelectorAll("button, input[type=submit]").forEach((b) => { b.disabled = on; });
}
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || form.matches("[hx-get], [hx-post]")) return;
  // After the browser has read the form (a disabled button's name would not be sent).
  setTimeout(() => busy(form, true), 0);
  setTimeout(() => busy(form, false), 8000);
});
document.addEventListener("htmx:beforeRequest", (event) => {
  const form = event.detail.elt.closest("form");
  if (form) busy(form, true);
});
document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt.closest("form");
  if (form) busy(form, false);
});
window.addEventListener("pageshow", () => {
  document.querySelectorAll("form[aria-busy=true]").forEach((form) => busy(form, false));
});

// Each table cell knows its column's name, shown before it where tables stack (phones).
function labelCells(root) {
  root.querySelectorAll("table.list").forEach((table) => {
    const names = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    table.querySelectorAll("tbody tr").forEach((row) => {
      [...row.children].forEach((cell, i) => {
        if (names[i] && !cell.hasAttribute("data-label")) cell.setAttribute("data-label", names[i]);
      });
    });
  });
}
document.addEventListener("DOMContentLoaded", () => labelCells(document));
document.addEventListener("htmx:afterSwap", (event) => labelCells(event.detail.elt.parentElement || document));
