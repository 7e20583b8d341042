// Buttons with data-copy="<id>" copy that input's value (or that element's text) and say so
// next to them.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const input = document.getElementById(button.dataset.copy);
  const status = document.getElementById(button.dataset.copy + "-copied");
  if (!input) return;
  try {
    await navigator.clipboard.writeText("value" in input ? input.value : input.textContent.trim());
    if (status) status.textContent = "Copied.";
  } catch (error) {
    if (input.select) input.select();
    if (status) status.textContent = "Press Ctrl+C (or Cmd+C) to copy the selected URL.";
  }
});
