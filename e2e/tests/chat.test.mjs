// What a person sees, through nginx, with the real llama-server and PostgreSQL behind it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { BASE, SLOW_BASE, LLAMA, launch, shot, startChat, watchReply, samples, waitForReplyEnd, newestReplyText, policyViolations } from "./helpers.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test("a reply streams in over several moments, then shows rendered", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  await startChat(page, BASE, "Tell me a long story");
  await waitForReplyEnd(page);
  await page.fill("#content", "And another one, please");
  await watchReply(page);
  await page.locator("#content").press("Enter");
  await page.waitForFunction(() => document.querySelectorAll(".message.assistant").length >= 3 || document.querySelector(".status-streaming .content")?.textContent.length > 0);
  await shot(page, "01-streaming");
  await waitForReplyEnd(page);
  const seen = await samples(page);
  const growing = new Set(seen.filter((s) => s.streaming && s.length > 0).map((s) => s.length));
  assert.ok(growing.size >= 3, `text grew over ${growing.size} distinct moments: ${JSON.stringify(seen)}`);
  const last = page.locator(".message.assistant").last();
  assert.equal(await last.locator(".content p").count() > 0, true, "final reply rendered as HTML");
  assert.ok(await last.locator(".reply-actions button.regenerate").isVisible(), "Regenerate offered");
  assert.equal(await page.locator(".stop-form").count(), 0, "Stop only while streaming");
  // Under the reply, swapped in with its end (no reload): the model, tokens and timings.
  const stats = last.locator(".reply-stats");
  assert.ok(await stats.isVisible(), "the reply's stats show under it");
  const line = await stats.textContent();
  assert.match(line, /\S+ · [\d,]+ prompt \+ [\d,]+ reply tokens · first token in [\d,.]+ m?s · [\d.]+ tokens\/s/, line);
  await shot(page, "02-done");
  await context.close();
});

test("a streaming reply's text is rendered HTML as it grows, and its end keeps the same element and text", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  await startChat(page, BASE, "Write a long answer");
  await page.waitForFunction(() => document.querySelector(".status-streaming .content") !== null, null, { timeout: 10_000 }).catch(() => {});
  const streaming = await page.evaluate(() => {
    const content = document.querySelector(".status-streaming .content");
    if (!content) return false;
    window.__content = content;
    window.__states = [];
    new MutationObserver(() => window.__states.push(content.innerHTML)).observe(content, { subtree: true, childList: true, characterData: true });
    return true;
  });
  await waitForReplyEnd(page);
  if (streaming) {
    const result = await page.evaluate(() => {
      const message = window.__content.closest(".message");
      return {
        same: message.querySelector(".content") === window.__content,
        final: (() => {
          const clone = window.__content.cloneNode(true);
          clone.querySelectorAll("button.copy").forEach((button) => button.remove());
          return clone.innerHTML;
        })(),
        id: message.id,
        states: window.__states,
        busy: window.__content.getAttribute("aria-busy"),
      };
    });
    assert.ok(result.same, "done kept the text's element");
    assert.equal(result.busy, "false");
    assert.ok(result.states.length >= 2, `the text changed ${result.states.length} times`);
    for (const state of result.states) {
      assert.ok(!/<script|\son\w+=/i.test(state), state);
      // Every moment shows markup, never escaped text in a span.
      assert.ok(state === "" || state.startsWith("<"), state.slice(0, 80));
    }
    await page.reload();
    const reloaded = await page.locator(`#${result.id} .content`).evaluate((content) => {
      const clone = content.cloneNode(true);
      clone.querySelectorAll("button.copy").forEach((button) => button.remove());
      return clone.innerHTML;
    });
    assert.equal(reloaded, result.final, "the page after a reload shows the same HTML");
  }
  await context.close();
});

// A reply of the tiny model lasts about five seconds here (see .ci/e2e.sh): when one ends
// before the scenario could act on it mid-stream, the scenario runs again on a new chat (at most
// three times); the assertions are only made on a run that caught the reply mid-stream.
async function midReply(scenario) {
  for (let attempt = 1; attempt <= 3; attempt++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await startChat(page, BASE, `Write at length (attempt ${attempt})`);
      const caught = await page.waitForFunction(
        () => (document.querySelector(".status-streaming .content")?.textContent.length ?? 0) > 0, null, { timeout: 5000 },
      ).then(() => true, () => false);
      if (caught && await scenario(page)) return;
    } finally {
      await context.close();
    }
  }
  assert.fail("no reply lasted long enough to act on it mid-stream in three attempts");
}

test("reloading mid-reply continues from where it was", async () => {
  await midReply(async (page) => {
    const before = await newestReplyText(page);
    await page.reload();
    const streaming = await page.locator(".message.assistant").last().evaluate((el) => el.classList.contains("status-streaming"));
    if (!streaming) return false;
    await page.waitForFunction((n) => (document.querySelector(".message.assistant:last-child .content")?.textContent.length ?? 0) > n, before.length);
    const after = await newestReplyText(page);
    // The end of what was shown may still have been completing (a construct closed as it
    // would end); everything before it stays as it was.
    const settled = before.slice(0, Math.max(0, before.length - 200));
    assert.ok(after.startsWith(settled), "continues the same text, no gap and no duplicate");
    await shot(page, "03-after-reload");
    await waitForReplyEnd(page);
    return true;
  });
});

test("Stop stops the reply and frees llama-server's slot within a second", async () => {
  await midReply(async (page) => {
    // While a reply is written the composer's one button is Stop.
    const stop = page.locator("#composer button.stop-reply");
    if (!(await stop.isVisible())) return false;
    // The button moves down as the text grows, so Playwright's "stable element" wait for a
    // mouse click would never end: press it with a click event instead.
    await stop.dispatchEvent("click");
    const stoppedAt = Date.now();
    await waitForReplyEnd(page, 5000);
    if (await page.getByText("Stopped.").count() === 0) return false; // it had already ended
    let busy = true;
    while (busy && Date.now() - stoppedAt < 1000) {
      const slots = await (await fetch(`${LLAMA}/slots`)).json();
      busy = slots.some((slot) => slot.is_processing);
      if (busy) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(busy, false, "no busy slot within a second of Stop");
    const text = await newestReplyText(page);
    await page.waitForTimeout(500);
    assert.equal(await newestReplyText(page), text, "no more text after Stop");
    await shot(page, "04-stopped");
    return true;
  });
});

test("another browser (another session) cannot see the first one's chats", async () => {
  const alice = await browser.newContext();
  const page = await alice.newPage();
  await startChat(page, BASE, "Alice's private question");
  await waitForReplyEnd(page);
  const url = page.url();
  const bob = await browser.newContext();
  const other = await bob.newPage();
  await other.goto(BASE + "/");
  assert.equal(await other.getByText("Alice's private question").count(), 0);
  const response = await other.goto(url);
  assert.equal(response.status(), 404);
  await shot(other, "05-other-session-404");
  await alice.close();
  await bob.close();
});

test("without JavaScript a message gets its reply after the redirect", async () => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(BASE + "/");
  await page.fill("#content", "No scripts here");
  await page.click("button:has-text('Start chat')");
  await page.waitForURL(/\/chats\//);
  // The page refreshes itself (noscript meta refresh) until the reply is complete.
  await page.locator(".message.assistant.status-complete:nth-last-child(1) .content").waitFor({ timeout: 60_000 });
  assert.ok((await newestReplyText(page)).length > 0);
  await page.fill("#content", "And a second message");
  await page.click("#composer button:has-text('Send')");
  await page.locator(".message.user:has-text('And a second message')").waitFor();
  await page.locator(".message.assistant.status-complete:nth-last-child(1)").waitFor({ timeout: 60_000 });
  await shot(page, "06-no-javascript");
  await context.close();
});

test("through nginx the first text of a slow reply arrives long before its end (no buffering)", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await startChat(page, SLOW_BASE, "Slowly, please");
  await page.goto(page.url()); // a fresh page that attaches to the reply in progress
  await watchReply(page);
  await waitForReplyEnd(page);
  const seen = await samples(page);
  const first = seen.find((s) => s.streaming && s.length > 0);
  const end = seen.find((s) => !s.streaming);
  assert.ok(first && end, JSON.stringify(seen));
  // The slow model sends 20 pieces 100 ms apart: unbuffered, the first shows ~1.5 s before the end.
  assert.ok(end.t - first.t > 1000, `first text ${Math.round(end.t - first.t)} ms before the end`);
  await context.close();
});

// The apps behind BASE and SLOW_BASE are two replicas on one PostgreSQL database with one
// session key (.ci/e2e.sh): a page on one follows, and stops, a reply the other writes.
test("a page on another replica shows the reply live as its replica writes it, and stops it", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const writer = await context.newPage();
  await startChat(writer, SLOW_BASE, "Slowly and at length, for two replicas");
  const chatPath = new URL(writer.url()).pathname;
  const follower = await context.newPage();
  await follower.goto(BASE + chatPath);
  await watchReply(follower);
  await follower.waitForFunction(() => (document.querySelector(".status-streaming .content")?.textContent.length ?? 0) > 0);
  await shot(follower, "49-followed-on-another-replica");
  await waitForReplyEnd(follower);
  const seen = await samples(follower);
  const growing = new Set(seen.filter((s) => s.streaming && s.length > 0).map((s) => s.length));
  assert.ok(growing.size >= 3, `text grew over ${growing.size} distinct moments: ${JSON.stringify(seen)}`);
  await waitForReplyEnd(writer);
  assert.equal(await newestReplyText(follower), await newestReplyText(writer), "both replicas show the same reply");

  // The next reply, written by SLOW_BASE's replica, stopped from the page on BASE's.
  await writer.fill("#content", "Again at length, then stop");
  await writer.locator("#content").press("Enter");
  await writer.locator(".message.assistant.status-streaming").waitFor();
  await follower.reload();
  await follower.waitForFunction(() => (document.querySelector(".status-streaming .content")?.textContent.length ?? 0) > 0);
  await follower.locator("#composer button.stop-reply").dispatchEvent("click");
  await follower.getByText("Stopped.").waitFor({ timeout: 5000 });
  await writer.getByText("Stopped.").waitFor({ timeout: 5000 });
  const stoppedText = await newestReplyText(writer);
  await writer.waitForTimeout(500);
  assert.equal(await newestReplyText(writer), stoppedText, "the writer wrote no more after Stop");
  await shot(follower, "50-stopped-from-another-replica");
  await context.close();
});

test("the page works under its Content-Security-Policy, and a cross-site form post is refused", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const violations = [];
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      console.error(`Refused to ${e.effectiveDirective}: ${e.blockedURI}`);
    });
  });
  await startChat(page, BASE, "Say something with **markdown** and `code`");
  await waitForReplyEnd(page);
  // htmx at work under the policy: a second message, swapped in and streamed.
  await page.fill("#content", "One more");
  await page.locator("#content").press("Enter");
  // The greeting, the first reply, and the new one swapped in by htmx.
  await page.waitForFunction(() => document.querySelectorAll(".message.assistant").length >= 3);
  await waitForReplyEnd(page);
  const response = await page.goto(page.url());
  assert.match(response.headers()["content-security-policy"], /script-src 'self'/);
  assert.deepEqual(violations, [], "no CSP violations while chatting");

  // Another site's page that posts a form to our app, in the same browser (same cookie).
  const chats = await page.locator("#chat-list li").count();
  const evil = await context.newPage();
  await evil.setContent(`<form method="post" action="${BASE}/chats"><input name="content" value="forged"></form>`);
  const [refused] = await Promise.all([
    evil.waitForNavigation(),
    evil.evaluate(() => document.forms[0].submit()),
  ]);
  assert.equal(refused.status(), 403);
  assert.match(await evil.content(), /another site/);
  await page.reload();
  assert.equal(await page.locator("#chat-list li").count(), chats, "no chat was created");
  await shot(evil, "07-cross-site-refused");
  await context.close();
});

test("copy buttons copy a message and a code block exactly", async () => {
  const context = await browser.newContext();
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: SLOW_BASE });
  const page = await context.newPage();
  await startChat(page, SLOW_BASE, "Show me <some> code & more");
  await waitForReplyEnd(page);
  const clipboard = () => page.evaluate(() => navigator.clipboard.readText());

  const mine = page.locator(".message.user").last();
  await mine.locator(".copy-message").click();
  assert.equal(await clipboard(), "Show me <some> code & more");
  await page.waitForFunction(() => document.querySelector(".message.user .copy-message")?.textContent === "Copied");

  // The reply arrived by streaming; its code block gets its own button once it is rendered.
  const reply = page.locator(".message.assistant").last();
  // Highlighted on the server (a `js` fence): classed spans in at least two colours.
  const colours = await reply.locator("pre code").evaluate((code) =>
    [...new Set([...code.querySelectorAll("span[class^='hl-']")].map((s) => getComputedStyle(s).color))]);
  assert.ok(colours.length >= 2, `the code block is highlighted: ${JSON.stringify(colours)}`);
  await reply.locator(".copy-code").click();
  assert.equal(await clipboard(), "const answer = 42; // <ok>\n");
  await reply.locator(".copy-message").click();
  const whole = await clipboard();
  assert.match(whole, /^word0 word1[\s\S]*\n\s*const answer = 42; \/\/ <ok>$/);
  assert.ok(!/Cop(y|ied)/.test(whole), `the code block's button is not part of the text: ${whole}`);
  await shot(page, "08-copy-buttons");

  // After a reload too (buttons are added to the page as served).
  await page.reload();
  assert.equal(await page.locator(".message.assistant").last().locator(".copy-code").count(), 1);
  await context.close();
});

test("keyboard shortcuts: ? lists them, / focuses the composer, Ctrl+Shift+O starts a new chat", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await startChat(page, SLOW_BASE, "First chat");
  await waitForReplyEnd(page);
  const firstUrl = page.url();
  await page.locator("main").click({ position: { x: 5, y: 5 } }); // nothing focused that takes text

  await page.keyboard.press("Shift+Slash"); // "?"
  const dialog = page.locator("dialog#shortcuts");
  assert.ok(await dialog.isVisible(), "the shortcuts dialog opens");
  for (const words of ["New chat", "focus the composer", "Stop the reply"]) {
    assert.ok((await dialog.textContent()).includes(words), words);
  }
  await shot(page, "09-shortcuts");
  await page.keyboard.press("Escape");
  assert.ok(!(await dialog.isVisible()), "Esc closes it");
  // The sidebar offers the same list by click.
  await page.click("#show-shortcuts");
  assert.ok(await dialog.isVisible());
  await dialog.getByRole("button", { name: "Close" }).click();

  await page.keyboard.press("/");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "content");
  // Typing "/" or "?" in the composer is text, not a shortcut.
  await page.keyboard.type("a/b?");
  assert.equal(await page.inputValue("#content"), "a/b?");
  assert.ok(!(await dialog.isVisible()));

  await page.keyboard.press("Control+Shift+O");
  await page.waitForURL((url) => url.href !== firstUrl && /\/chats\/[0-9a-f-]{36}$/.test(url.pathname));
  assert.equal(await page.locator(".message.user").count(), 0, "a new, empty chat");
  await context.close();
});

test("no page of these flows reported a Content-Security-Policy violation", () => {
  assert.deepEqual(policyViolations, []);
});
