// The first command's app: no LM_API_URL, llama.cpp embedded in the app with SmolLM2 (a real
// instruct model), SQLite, behind nginx. What a person sees: real text streaming in, Stop, and a
// reload in the middle of a reply that carries on.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { EMBEDDED_BASE, FIRST_RUN, FAKE_HUB, launch, shot, startChat, watchReply, samples, waitForReplyEnd, newestReplyText, policyViolations } from "./helpers.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("first run: the page works at once and shows the download's progress, then chats", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  await page.goto(FIRST_RUN + "/");
  assert.ok(await page.locator("#content").isVisible(), "the composer is there while the model downloads");
  const downloading = page.locator(".model-status.loading", { hasText: /Downloading the model: \d+%/ });
  await downloading.waitFor({ timeout: 10_000 });
  const first = Number(/(\d+)%/.exec(await downloading.textContent())[1]);
  await shot(page, "19-first-run-downloading");
  await fetch(`${FAKE_HUB}/go`);
  // The indicator asks again every second while the model is on its way.
  await page.waitForFunction((n) => {
    const m = /(\d+)%/.exec(document.querySelector(".model-status")?.textContent ?? "");
    return (m && Number(m[1]) > n) || document.querySelector(".model-status.ready");
  }, first, { timeout: 20_000 });
  await page.locator(".model-status.ready").waitFor({ timeout: 60_000 });
  await startChat(page, FIRST_RUN, "Hello! Who are you?");
  await waitForReplyEnd(page);
  const answer = await newestReplyText(page);
  assert.ok(answer.trim().length > 0, "a reply from the downloaded model");
  assert.equal(await page.locator(".message.assistant.status-error").count(), 0);
  await shot(page, "19-first-run-chat");
  await context.close();
});

test("embedded: the model indicator is ready and a question gets a real answer, streamed", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  await page.goto(EMBEDDED_BASE + "/");
  await page.locator(".model-status.ready").waitFor({ timeout: 30_000 });
  await startChat(page, EMBEDDED_BASE, "Hi");
  await waitForReplyEnd(page);
  await page.fill("#content", "What is the capital of France?");
  await watchReply(page);
  await page.locator("#content").press("Enter");
  await page.waitForFunction(() => (document.querySelector(".status-streaming .content")?.textContent.length ?? 0) > 0, null, { timeout: 30_000 });
  await shot(page, "20-embedded-streaming");
  await waitForReplyEnd(page);
  const seen = await samples(page);
  const growing = new Set(seen.filter((s) => s.streaming && s.length > 0).map((s) => s.length));
  assert.ok(growing.size >= 2, `text grew over ${growing.size} distinct moments: ${JSON.stringify(seen)}`);
  const answer = await newestReplyText(page);
  assert.match(answer, /Paris/, answer);
  assert.doesNotMatch(answer, /<\|im_(start|end)\|>/, "no template markup in the reply");
  // The embedded engine's own stats, under the answer: its model file's name and counts.
  const stats = await page.locator(".message.assistant").last().locator(".reply-stats").textContent();
  assert.match(stats, /^SmolLM2-135M-Instruct\.Q4_1 · [\d,]+ prompt \+ [\d,]+ reply tokens · first token in [\d,.]+ m?s · [\d.]+ tokens\/s$/, stats);
  await shot(page, "21-embedded-answer");
  await context.close();
});

// A story from SmolLM2 at about 50 tokens/s lasts several seconds; a run where the reply ended
// before the scenario could act on it is tried again (at most three times).
async function midReply(scenario) {
  for (let attempt = 1; attempt <= 3; attempt++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await startChat(page, EMBEDDED_BASE, `Write a long story about a dragon and a baker (${attempt}).`);
      const caught = await page.waitForFunction(
        () => (document.querySelector(".status-streaming .content")?.textContent.length ?? 0) > 20, null, { timeout: 30_000 },
      ).then(() => true, () => false);
      if (caught && await scenario(page)) return;
    } finally {
      await context.close();
    }
  }
  assert.fail("no reply lasted long enough to act on it mid-stream in three attempts");
}

test("embedded: reloading mid-reply continues the same text", async () => {
  await midReply(async (page) => {
    const before = await newestReplyText(page);
    await page.reload();
    const streaming = await page.locator(".message.assistant").last().evaluate((el) => el.classList.contains("status-streaming"));
    if (!streaming) return false;
    await page.waitForFunction((n) => (document.querySelector(".message.assistant:last-child .content")?.textContent.length ?? 0) > n, before.length, { timeout: 30_000 });
    const after = await newestReplyText(page);
    // The end of what was shown may still have been completing (markup closed as it would
    // end, or held back); everything before it stays as it was.
    const settled = before.slice(0, Math.max(0, before.length - 200));
    assert.ok(after.startsWith(settled), "continues the same text, no gap and no duplicate");
    await shot(page, "22-embedded-after-reload");
    await waitForReplyEnd(page);
    return true;
  });
});

test("embedded: Stop ends the reply at once and keeps its text", async () => {
  await midReply(async (page) => {
    const stop = page.locator("#composer button.stop-reply");
    if (!(await stop.isVisible())) return false;
    await stop.dispatchEvent("click");
    await waitForReplyEnd(page, 5000);
    if (await page.getByText("Stopped.").count() === 0) return false; // it had already ended
    const text = await newestReplyText(page);
    assert.ok(text.length > 20, "the partial text is kept");
    await page.waitForTimeout(500);
    assert.equal(await newestReplyText(page), text, "no more text after Stop");
    await shot(page, "23-embedded-stopped");
    // The sequence is free: the next question is answered.
    const replies = await page.locator(".message.assistant").count();
    await page.fill("#content", "Thank you. What is 2 + 2?");
    await page.locator("#content").press("Enter");
    await page.waitForFunction((n) => document.querySelectorAll(".message.assistant").length > n, replies, { timeout: 10_000 });
    await waitForReplyEnd(page);
    const next = page.locator(".message.assistant").last();
    assert.equal(await next.getByText("Stopped.").count(), 0, "the next question is answered, not stopped");
    assert.equal(await next.locator(".message-error").count(), 0, "no error");
    assert.ok((await newestReplyText(page)).trim().length > 0, "the next question is answered");
    return true;
  });
});

test("embedded: the Models page lists the library and a chat is answered by the model it chose", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  await page.goto(EMBEDDED_BASE + "/models");
  const rows = page.locator(".model-table tbody tr");
  assert.equal(await rows.count(), 2, "the configured model and the one in the models folder");
  const smol = rows.filter({ hasText: "SmolLM2-135M-Instruct.Q4_1" });
  assert.match(await smol.textContent(), /default[\s\S]*Q4_1[\s\S]*8,192 tokens[\s\S]*chatml[\s\S]*loaded/);
  const tiny = rows.filter({ hasText: "tiny-random" });
  assert.match(await tiny.locator(".model-state").textContent(), /not loaded/);
  await shot(page, "24-models-page");
  // A chat on the other model: its reply's stats name it (the tiny model loads too fast for
  // the "Loading the model" status to be seen reliably; app/tests/it/model_library.rs checks it).
  await startChat(page, EMBEDDED_BASE, "Hi");
  await waitForReplyEnd(page);
  await page.locator("#chat-settings summary").click();
  await page.selectOption("#model", "tiny-random");
  await page.fill("#max_tokens", "12");
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.locator("#chat-settings .saved").waitFor();
  const replies = await page.locator(".message.assistant").count();
  await page.fill("#content", "Hello, small model.");
  await page.locator("#content").press("Enter");
  await page.waitForFunction((n) => document.querySelectorAll(".message.assistant").length > n, replies, { timeout: 10_000 });
  await waitForReplyEnd(page);
  const stats = await page.locator(".message.assistant").last().locator(".reply-stats").textContent();
  assert.match(stats, /^tiny-random · /, stats);
  await shot(page, "25-models-chat-on-another-model");
  await page.goto(EMBEDDED_BASE + "/models");
  assert.match(await page.locator(".model-table tbody tr", { hasText: "tiny-random" }).locator(".model-state").textContent(), /^loaded$/);
  assert.match(await page.locator(".model-table tbody tr", { hasText: "SmolLM2" }).locator(".model-state").textContent(), /not loaded/, "one model at a time (LM_MAX_LOADED=1)");
  await shot(page, "26-models-page-after-switch");
  await context.close();
});

test("embedded: the operator signs in, downloads a model with its progress live, makes it the default and removes it", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  await page.goto(EMBEDDED_BASE + "/admin");
  assert.equal(await page.getByRole("button", { name: "Make default" }).count(), 0, "no controls before signing in");
  await page.fill("#token", "not the token");
  await page.getByRole("button", { name: "Sign in" }).click();
  assert.match(await page.locator("main").textContent(), /That is not the operator/);
  await page.goto(EMBEDDED_BASE + "/admin");
  await page.fill("#token", "e2e-operator-token-0123456789");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("h2", { hasText: "Model library" }).waitFor();
  await page.fill("#repo", "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF");
  await page.getByRole("button", { name: "List its GGUF files" }).click();
  const file = page.locator(".hub-files li", { hasText: "smollm2-135m-instruct-q4_1.gguf" });
  await file.waitFor();
  assert.doesNotMatch(await page.locator(".hub-files").textContent(), /README/, "only GGUF files are offered");
  await shot(page, "27-admin-hub-files");
  await file.getByRole("button", { name: "Download" }).click();
  // The table follows the download (about 5 s at the stand-in hub's pace) without a reload.
  const row = page.locator(".model-table tbody tr", { hasText: "smollm2-135m-instruct-q4_1" });
  await row.locator(".model-state", { hasText: "downloading" }).waitFor({ timeout: 10_000 });
  await page.waitForFunction(() => /[1-9]\d*%/.test(document.querySelector(".model-download")?.textContent ?? ""), null, { timeout: 20_000 });
  await shot(page, "28-admin-downloading");
  await row.locator(".model-state", { hasText: "not loaded" }).waitFor({ timeout: 60_000 });
  await shot(page, "29-admin-downloaded");
  // Make it the default: a new chat is answered by it.
  await row.getByRole("button", { name: "Make default" }).click();
  await page.locator(".model-table tbody tr", { hasText: "smollm2-135m-instruct-q4_1" }).locator(".badge", { hasText: "default" }).waitFor();
  await startChat(page, EMBEDDED_BASE, "Hello");
  await waitForReplyEnd(page);
  const stats = await page.locator(".message.assistant").last().locator(".reply-stats").textContent();
  assert.match(stats, /^smollm2-135m-instruct-q4_1 · /, stats);
  // Back to the configured default, then remove the download.
  await page.goto(EMBEDDED_BASE + "/admin");
  await page.locator(".model-table tbody tr", { hasText: "SmolLM2-135M-Instruct.Q4_1" }).getByRole("button", { name: "Make default" }).click();
  // The chat's title is still being written by the downloaded model for a moment: until then
  // it is in use, and Remove says so (409).
  for (let attempt = 0; ; attempt++) {
    await page.goto(EMBEDDED_BASE + "/admin");
    await page.locator(".model-table tbody tr", { hasText: "smollm2-135m-instruct-q4_1" }).getByRole("button", { name: "Remove" }).click();
    if (await page.locator("h2", { hasText: "Model library" }).count() > 0) break;
    assert.match(await page.locator("main").textContent(), /is writing a reply/);
    assert.ok(attempt < 30, "the model is free again within 15 s");
    await page.waitForTimeout(500);
  }
  assert.equal(await page.locator(".model-table tbody tr", { hasText: "smollm2-135m-instruct-q4_1" }).count(), 0, "removed from the library");
  await page.goto(EMBEDDED_BASE + "/models");
  assert.ok(await page.getByRole("link", { name: "download, remove or choose the default model" }).isVisible(), "the operator's browser is shown the way to /admin");
  await context.close();
  // Another browser sees the Models page without them.
  const visitor = await browser.newContext();
  const other = await visitor.newPage();
  await other.goto(EMBEDDED_BASE + "/models");
  assert.equal(await other.getByRole("link", { name: "download, remove or choose the default model" }).count(), 0);
  await visitor.close();
});

test("no page of these flows reported a Content-Security-Policy violation", () => {
  assert.deepEqual(policyViolations, []);
});
