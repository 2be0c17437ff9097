// Small progressive enhancements; every page works without this file.
"use strict";

// Parts of the page that only work with this file show only with it.
document.documentElement.classList.add("js");

// Enter sends, Shift+Enter is a newline (not while an IME is composing).
document.addEventListener("keydown", (event) => {
  const field = event.target;
  if (!(field instanceof HTMLTextAreaElement) || !field.hasAttribute("data-enter-sends")) return;
  if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
  event.preventDefault();
  const submit = field.form?.querySelector("button.send");
  const files = field.form?.querySelector("input[type=file]")?.files;
  if ((field.value.trim() === "" && !files?.length) || submit?.disabled || replyBeingWritten()) return;
  field.form?.requestSubmit();
});

// Files dropped on a composer become its attachments (the file input keeps them).
document.addEventListener("dragover", (event) => {
  if (event.target instanceof Element && event.target.closest(".composer")) event.preventDefault();
});
document.addEventListener("drop", (event) => {
  const form = event.target instanceof Element ? event.target.closest(".composer") : null;
  const input = form?.querySelector("input[type=file]");
  if (!input || !event.dataTransfer?.files.length) return;
  event.preventDefault();
  input.files = event.dataTransfer.files;
  showChosenFiles(input);
});

// The chosen files as chips under the composer, each with a button that takes it out again.
function fileSize(bytes) {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KiB`;
  return `${bytes} bytes`;
}
function showChosenFiles(input) {
  const chips = input.closest(".attach")?.querySelector(".file-chips");
  if (!chips) return;
  chips.replaceChildren(...[...input.files].map((file, index) => {
    const chip = document.createElement("li");
    chip.className = "file-chip";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = file.name;
    const size = document.createElement("span");
    size.className = "size";
    size.textContent = fileSize(file.size);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${file.name}`);
    remove.addEventListener("click", () => {
      const kept = new DataTransfer();
      [...input.files].forEach((f, i) => { if (i !== index) kept.items.add(f); });
      input.files = kept.files;
      showChosenFiles(input);
      input.focus();
    });
    chip.append(name, size, remove);
    return chip;
  }));
}
document.addEventListener("change", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.matches(".attach .file-input")) showChosenFiles(event.target);
});
document.addEventListener("reset", (event) => {
  const input = event.target instanceof HTMLFormElement ? event.target.querySelector(".attach .file-input") : null;
  if (input) setTimeout(() => showChosenFiles(input), 0);
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

// A call answered (Allow or Deny): its buttons give way to the answer until the step's result
// comes with the stream.
document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt;
  const box = form instanceof HTMLFormElement ? form.closest(".tool-approval") : null;
  if (!box || !event.detail.successful) return;
  const answer = event.detail.requestConfig?.parameters?.get?.("decision") ?? "";
  box.replaceChildren(document.createTextNode(answer === "deny" ? "Denied." : "Allowed: the call is being made…"));
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

// Streaming replies: `html` and `reasoning` events carry changes to the rendered text
// (ARCHITECTURE.md "The stream contract"): finished blocks are added once, the open block at
// the end is replaced. The page only ever holds HTML the server sanitised.
const openBlocks = new WeakMap();
function applyRenderedUpdate(element, data) {
  const newline = data.indexOf("\n");
  const [mode, blocksLength, keep, keepEnd] = data.slice(0, newline).split(" ");
  const body = data.slice(newline + 1);
  let open = openBlocks.get(element);
  if (mode === "r" || !open) {
    element.replaceChildren();
    open = { html: "", nodes: [] };
    openBlocks.set(element, open);
  }
  open.nodes.forEach((node) => node.remove());
  const blocks = body.slice(0, Number(blocksLength));
  if (blocks) {
    element.insertAdjacentHTML("beforeend", blocks);
    open.html = "";
  }
  const had = open.html;
  const end = Math.max(had.length - Number(keepEnd), Number(keep));
  open.html = had.slice(0, Number(keep)) + body.slice(Number(blocksLength)) + had.slice(end);
  const template = document.createElement("template");
  template.innerHTML = open.html;
  open.nodes = [...template.content.childNodes];
  element.append(template.content);
}
document.addEventListener("htmx:sseBeforeMessage", (event) => {
  const type = event.detail.type;
  if (type !== "html" && type !== "reasoning") return;
  event.preventDefault();
  applyRenderedUpdate(event.target, event.detail.data);
  scrollToEnd(false);
});

document.addEventListener("htmx:sseMessage", (event) => {
  const bubble = event.target.closest(".message");
  if (event.detail.type === "done" && bubble) {
    bubble.classList.remove("status-streaming");
    bubble.querySelector(".content")?.setAttribute("aria-busy", "false");
    // The reasoning folds away once the answer is complete, as a page rendered now shows it.
    const thinking = bubble.querySelector("details.thinking");
    if (thinking) thinking.open = false;
    bubble.removeAttribute("sse-connect");
    updateComposer();
  }
  scrollToEnd(false);
});

// One reply at a time per chat: while one is being written the composer's one button is Stop.
function replyBeingWritten() {
  return document.querySelector("#messages .message.status-streaming") !== null;
}
function updateComposer() {
  const button = document.querySelector("#composer button.send");
  if (!button) return;
  const busy = replyBeingWritten();
  button.type = busy ? "button" : "submit";
  button.classList.toggle("stop-reply", busy);
  button.textContent = busy ? "■ Stop" : "Send";
  button.title = busy ? "Stop the reply being written (Esc)" : "";
}
document.addEventListener("click", (event) => {
  if (!(event.target instanceof Element) || !event.target.closest("#composer button.stop-reply")) return;
  event.preventDefault();
  document.querySelector(".status-streaming .stop-form")?.requestSubmit();
});
document.addEventListener("htmx:afterSettle", () => {
  updateComposer();
  // A new reply was added: earlier Regenerate buttons no longer apply.
  const actions = document.querySelectorAll(".reply-actions");
  actions.forEach((form, i) => { if (i < actions.length - 1 || document.querySelector(".status-streaming")) form.remove(); });
});
document.addEventListener("DOMContentLoaded", updateComposer);

// The chat's menu closes on Esc (focus back on its button) and on a click elsewhere.
document.addEventListener("keydown", (event) => {
  const menu = document.querySelector("#chat-menu[open]");
  if (event.key !== "Escape" || !menu) return;
  event.preventDefault();
  event.stopImmediatePropagation();
  menu.open = false;
  menu.querySelector("summary")?.focus();
}, true);
document.addEventListener("click", (event) => {
  const menu = document.querySelector("#chat-menu[open]");
  if (menu && event.target instanceof Node && !menu.contains(event.target)) menu.open = false;
});

// Esc stops the reply being written.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  const stop = document.querySelector(".status-streaming .stop-form");
  if (stop) { event.preventDefault(); stop.requestSubmit(); }
});

// Copy buttons: on every finished message (its text as shown) and on every code block (the code
// exactly). Added to the page as it changes; without JavaScript the text can still be selected.
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  // Plain HTTP on another host has no Clipboard API: the older way still works there.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

function copyButton(className, label, text) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `copy ${className}`;
  button.textContent = "Copy";
  button.setAttribute("aria-label", label);
  button.addEventListener("click", async () => {
    try {
      await copyText(text());
      button.textContent = "Copied";
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  });
  return button;
}

// The text as shown (paragraphs and lines kept), without the code blocks' own Copy buttons:
// innerText leaves out what is not displayed, and nothing is painted in between.
function shownText(content) {
  content.classList.add("copying");
  const text = content.innerText.trim();
  content.classList.remove("copying");
  return text;
}

function addCopyButtons() {
  document.querySelectorAll(".message:not(.status-streaming)").forEach((message) => {
    const content = message.querySelector(".content");
    if (!content || message.querySelector(".copy-message")) return;
    const button = copyButton("copy-message", "Copy this message", () => shownText(content));
    // In the message's row of controls when it has one (after ‹ 2/3 ›, before Edit or Regenerate).
    const row = message.querySelector(".message-actions");
    const versions = row?.querySelector(".versions");
    if (versions) versions.after(button);
    else if (row) row.prepend(button);
    else content.after(button);
  });
  document.querySelectorAll(".share-links .share-link, .device-link-made .device-link").forEach((link) => {
    if (link.parentElement?.querySelector(".copy-link")) return;
    link.after(copyButton("copy-link", "Copy this link", () => new URL(link.getAttribute("href"), location.href).href));
  });
  document.querySelectorAll(".message .content pre").forEach((pre) => {
    if (pre.querySelector(".copy-code")) return;
    const code = pre.querySelector("code") ?? pre;
    pre.prepend(copyButton("copy-code", "Copy this code", () => code.textContent));
  });
}
document.addEventListener("DOMContentLoaded", addCopyButtons);
document.addEventListener("htmx:afterSettle", addCopyButtons);
document.addEventListener("htmx:sseMessage", (event) => {
  if (event.detail.type === "done") setTimeout(addCopyButtons, 0);
});

// Keyboard shortcuts (listed in the dialog that `?` opens): Ctrl+Shift+O new chat, `/` write a
// message. Single keys only act when no text field has the focus.
function typingIn(target) {
  return target instanceof HTMLElement
    && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function showShortcuts() {
  const dialog = document.getElementById("shortcuts");
  if (dialog && !dialog.open) dialog.showModal();
}

document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.shiftKey && event.key.toLowerCase() === "o") {
    event.preventDefault();
    document.querySelector(".sidebar form[action='/chats']")?.requestSubmit();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || typingIn(event.target)) return;
  if (event.key === "/") {
    const composer = document.querySelector("#composer textarea, .composer textarea");
    if (composer) { event.preventDefault(); composer.focus(); }
  } else if (event.key === "?") {
    event.preventDefault();
    showShortcuts();
  }
});
document.addEventListener("click", (event) => {
  if (event.target instanceof Element && event.target.closest("#show-shortcuts")) showShortcuts();
});

// A new save of the chat settings: the last one's "Saved." no longer applies.
document.addEventListener("htmx:beforeRequest", (event) => {
  if (event.detail.elt instanceof Element && event.detail.elt.closest("#chat-settings")) {
    document.querySelector("#chat-settings .saved")?.remove();
  }
});

// The context gauge came back after a reply: draw the line above the messages that no longer
// reach the model where it says (the server draws it on a page it renders).
document.addEventListener("htmx:load", (event) => {
  const gauge = event.detail.elt;
  if (gauge instanceof HTMLElement && gauge.id === "context-gauge") placeContextBoundary(gauge);
});

function placeContextBoundary(gauge) {
  const list = document.getElementById("messages");
  if (!list) return;
  let line = document.getElementById("context-boundary");
  const first = Number(gauge.dataset.firstSentSeq);
  const items = [...list.querySelectorAll(":scope > li.message[data-seq]")];
  if (!gauge.dataset.firstSentSeq || items.length === 0) {
    line?.remove();
    return;
  }
  if (!line) {
    line = document.createElement("li");
    line.id = "context-boundary";
    line.className = "context-boundary";
  }
  line.textContent = gauge.dataset.boundaryText ?? "";
  const before = items.find((item) => Number(item.dataset.seq) >= first) ?? null;
  list.insertBefore(line, before);
}
