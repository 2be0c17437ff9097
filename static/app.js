// Small progressive enhancements; every page works without this file.
"use strict";

// Enter sends, Shift+Enter is a newline (not while an IME is composing).
document.addEventListener("keydown", (event) => {
  const field = event.target;
  if (!(field instanceof HTMLTextAreaElement) || !field.hasAttribute("data-enter-sends")) return;
  if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
  event.preventDefault();
  if (field.value.trim() === "") return;
  field.form?.requestSubmit();
});

// After htmx sends the composer: clear it on success, keep the text when it was refused.
document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt;
  if (!(form instanceof HTMLFormElement) || form.id !== "composer") return;
  if (event.detail.successful) {
    form.reset();
    document.getElementById("flash")?.replaceChildren();
    document.getElementById("no-messages")?.remove();
    scrollToEnd(true);
  }
  form.querySelector("textarea")?.focus();
});

// Follow the conversation to its end unless the reader scrolled up.
function scrollToEnd(force) {
  const history = document.getElementById("history");
  if (!history) return;
  const nearEnd = history.scrollHeight - history.scrollTop - history.clientHeight < 80;
  if (force || nearEnd) history.scrollTop = history.scrollHeight;
}
window.chatScrollToEnd = scrollToEnd;

document.addEventListener("DOMContentLoaded", () => {
  if (!location.hash) scrollToEnd(true);
});
