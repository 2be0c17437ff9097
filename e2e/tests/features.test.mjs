// The chat features, as a person meets them in a browser: per-chat settings, edit and resend,
// export and import, search, generated titles and a model's reasoning. Mostly on the app in front
// of the slow model (e2e/slow-lm.mjs), whose replies are known: ` word0 word1 …` then a code
// block, reasoning first when the message says "think", and the title "Slow Test Title".
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BASE, SLOW_BASE, ARTIFACTS, launch, launchWithProfile, shot, startChat, watchReply, samples, waitForReplyEnd, policyViolations } from "./helpers.mjs";

// The slow model server itself: what the app sent it last (title requests aside).
const SLOW_LM = process.env.E2E_SLOW_LM_URL ?? "http://127.0.0.1:18090";
const GENERATED_TITLE = "Slow Test Title";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

async function lastRequest() {
  const response = await fetch(`${SLOW_LM}/last-request`);
  assert.equal(response.status, 200);
  return response.json();
}

const chatIdOf = (page) => new URL(page.url()).pathname.split("/")[2];

/** Sends a message from the composer and waits until its reply is complete. */
async function send(page, text) {
  const replies = await page.locator(".message.assistant").count();
  await page.fill("#content", text);
  await page.locator("#content").press("Enter");
  await page.waitForFunction((n) => document.querySelectorAll(".message.assistant").length > n, replies);
  await waitForReplyEnd(page);
}

/** Opens the chat's settings (a click on the summary toggles them). */
/** Opens the chat's menu (everything about the chat but its title), if it is closed. */
async function openChatMenu(page) {
  if (await page.locator("#chat-menu").getAttribute("open") === null) await page.locator("#chat-menu > summary").click();
}

async function openSettings(page) {
  if (await page.locator("#chat-settings").getAttribute("open") === null) await page.locator("#chat-settings summary").click();
  assert.ok(await page.locator("#system_prompt").isVisible(), "the settings are open");
}

/** Waits for a condition in the page; on timeout fails with what the page shows instead. */
async function waitInPage(page, condition, arg, describe, timeout = 15_000) {
  try {
    await page.waitForFunction(condition, arg, { timeout });
  } catch {
    assert.fail(`${describe}; the page shows: ${JSON.stringify(await page.evaluate(
      () => ({
        url: location.href,
        title: document.getElementById("title")?.value,
        sidebar: [...document.querySelectorAll(".chat-link")].map((a) => a.textContent.trim()),
        flash: document.getElementById("flash")?.textContent.trim(),
        titleWatch: document.querySelectorAll(".title-watch").length,
      }),
    ))}`);
  }
}

/** Waits for the generated title in the title field and the chat's sidebar entry (no reload). */
async function waitForGeneratedTitle(page, chatId) {
  await waitInPage(page, ({ id, title }) =>
    document.querySelector(`#chat-item-${id} .chat-link`)?.textContent.trim() === title
      && document.getElementById("title")?.value === title,
  { id: chatId, title: GENERATED_TITLE }, `the title becomes "${GENERATED_TITLE}" in the sidebar and the title field`);
}

/**
 * After a chat's first reply its title is written in the background. Tests that need a title that
 * no longer changes wait until it is done (the page's own endpoint answers 286 then), and reload.
 */
async function settleTitle(page, chatId) {
  const deadline = Date.now() + 15_000;
  while ((await page.request.get(`${new URL(page.url()).origin}/chats/${chatId}/title`)).status() !== 286) {
    assert.ok(Date.now() < deadline, "the title is still being written after 15 s");
    await page.waitForTimeout(200);
  }
  await page.reload();
}

/** The messages of the chat as shown: role and text (without the Copy buttons' labels). */
async function shownMessages(page) {
  return page.locator("#messages > .message").evaluateAll((items) => items.map((item) => {
    const content = item.querySelector(".content").cloneNode(true);
    content.querySelectorAll(".copy").forEach((button) => button.remove());
    return { role: item.classList.contains("user") ? "user" : "assistant", text: content.textContent.trim() };
  }));
}

test("per-chat settings: saved in place, refused when invalid, sent with the next reply", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  await startChat(page, SLOW_BASE, "Settings, please");
  await waitForReplyEnd(page);

  const settings = page.locator("#chat-settings");
  assert.equal(await settings.getAttribute("open"), null, "folded at first");
  await settings.locator("summary", { hasText: "Settings" }).click();
  assert.ok(await page.locator("#system_prompt").isVisible());
  // The slow model server lists two models, so there is a picker, "Default" first.
  const options = await page.locator("#model option").evaluateAll((os) => os.map((o) => [o.value, o.textContent.trim()]));
  assert.deepEqual(options, [["", "Default"], ["slow", "slow"], ["slow-b", "slow-b"]]);

  const prompt = "Speak like a lighthouse keeper.";
  await page.fill("#system_prompt", prompt);
  await page.fill("#temperature", "0.3");
  await page.fill("#max_tokens", "77");
  await page.selectOption("#model", "slow-b");
  await settings.getByRole("button", { name: "Save settings" }).click();
  await page.locator("#chat-settings .saved").waitFor();
  assert.equal(await page.locator("#chat-settings .saved").textContent(), "Saved.");
  assert.notEqual(await settings.getAttribute("open"), null, "still open after saving");
  assert.equal(await page.inputValue("#system_prompt"), prompt);
  assert.equal(await page.inputValue("#temperature"), "0.3");
  assert.equal(await page.inputValue("#max_tokens"), "77");
  assert.equal(await page.inputValue("#model"), "slow-b");
  await shot(page, "10-settings-saved");

  // A temperature out of range: the browser's own check stops it first...
  await page.fill("#temperature", "5");
  assert.equal(await page.locator("#temperature").evaluate((el) => el.validity.rangeOverflow), true);
  // ...and without that check (an older browser), the app refuses it with a readable error.
  await settings.locator("form").evaluate((form) => { form.noValidate = true; });
  await settings.getByRole("button", { name: "Save settings" }).click();
  await waitInPage(page, () => /temperature/i.test(document.getElementById("flash")?.textContent ?? ""), null,
    "an error about the temperature in #flash");
  assert.match(await page.locator("#flash").textContent(), /temperature must be a number from 0 to 2/i);
  await shot(page, "11-settings-refused");
  await page.reload();
  await openSettings(page);
  assert.equal(await page.inputValue("#temperature"), "0.3", "the saved temperature stays");
  assert.equal(await page.inputValue("#system_prompt"), prompt);
  assert.equal(await page.locator("#chat-settings summary .badge").textContent(), "custom");

  // The next reply is asked for with these settings.
  await send(page, "What do you see tonight?");
  let sent = await lastRequest();
  assert.deepEqual(sent.messages[0], { role: "system", content: prompt }, "the system prompt comes first");
  assert.deepEqual(sent.messages.at(-1), { role: "user", content: "What do you see tonight?" });
  assert.ok(Math.abs(sent.temperature - 0.3) < 1e-6, `temperature ${sent.temperature}`);
  assert.equal(sent.max_tokens, 77);
  assert.equal(sent.model, "slow-b");

  // Blank fields mean the defaults again.
  await openSettings(page);
  await page.fill("#system_prompt", "");
  await page.fill("#temperature", "");
  await page.fill("#max_tokens", "");
  await page.selectOption("#model", "");
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.locator("#chat-settings .saved").waitFor();
  assert.equal(await page.locator("#chat-settings summary .badge").count(), 0, "no longer marked custom");
  await send(page, "And now?");
  sent = await lastRequest();
  assert.ok(!sent.messages.some((m) => m.content === prompt), "the chat's system prompt is gone");
  assert.equal(sent.model, "slow", "the default model (the first listed)");
  assert.notEqual(sent.max_tokens, 77);
  assert.ok(Math.abs(sent.temperature - 0.3) > 1e-6, `default temperature, not 0.3: ${sent.temperature}`);
  await context.close();

  // llama-server serves one model: no picker there.
  const single = await browser.newContext();
  const other = await single.newPage();
  await other.goto(BASE + "/");
  await other.click("button.new-chat");
  await other.waitForURL(/\/chats\/[0-9a-f-]{36}$/);
  await openSettings(other);
  assert.equal(await other.locator("#model").count(), 0, "no model picker with a single model");
  await single.close();
});

test("once a reply is complete, each of your messages offers Edit, without a reload", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await startChat(page, SLOW_BASE, "A first message to edit");
  await page.evaluate(() => { window.__samePage = true; });
  await waitForReplyEnd(page);
  const edits = () => page.locator("#messages > .message.user").evaluateAll((items) => items.map((item) => {
    const link = item.querySelector("a.edit-link");
    return link ? link.textContent.trim() : null;
  }));
  assert.deepEqual(await edits(), ["Edit"], "the chat's first message, after its reply, offers Edit");
  await send(page, "A second message");
  assert.deepEqual(await edits(), ["Edit", "Edit"], "every message of yours offers Edit");
  assert.equal(await page.evaluate(() => window.__samePage), true, "the page was not reloaded");
  await context.close();
});

/** A message's `‹ n/m ›` as its screen-reader text reads ("2 of 3 versions"), or null. */
async function versionsOf(message) {
  const number = message.locator(".versions .version-number");
  if (await number.count() === 0) return null;
  // The "/" is for the eye (aria-hidden); " of … versions" for the ear (visually hidden).
  return (await number.textContent()).replace("/", "").replace(/\s+/g, " ").trim();
}

for (const js of [true, false]) {
  test(`versions in place (${js ? "htmx" : "no JavaScript"}): an edit and a regeneration are ‹ 2/2 ›, and choosing one sets the path`, async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 }, javaScriptEnabled: js });
    const page = await context.newPage();
    const original = "Tell me about apples";
    const edited = "Tell me about pears instead";
    // Without JavaScript the page is read again until the reply has ended.
    const settled = async () => {
      if (js) return waitForReplyEnd(page);
      for (let i = 0; i < 200 && await page.locator(".status-streaming").count(); i++) {
        await page.waitForTimeout(300);
        await page.reload();
      }
      assert.equal(await page.locator(".status-streaming").count(), 0, "the reply ended");
    };
    await page.goto(SLOW_BASE + "/");
    await page.fill("#content", original);
    await page.locator(".composer button[type=submit]").click();
    await page.waitForURL((url) => /^\/chats\/[0-9a-f-]{36}$/.test(url.pathname));
    await settled();
    // A reply's text as written (the code blocks' Copy buttons come and go with scripts).
    const replyText = async (reply) => (await reply.locator(".content").textContent()).replaceAll("Copy", "").trim();
    const firstReplyText = await replyText(page.locator("#messages > .message.assistant").last());

    // Regenerate: the new reply takes the old one's place, with ‹ 2/2 ›.
    const oldReply = page.locator("#messages > .message.assistant").last();
    const oldId = await oldReply.getAttribute("id");
    await oldReply.locator("button.regenerate").click();
    await page.locator(`#${oldId}`).waitFor({ state: "detached" });
    await settled();
    const replies = page.locator("#messages > .message.assistant");
    assert.equal(await replies.count(), 2, "the greeting and one reply: the old one is not shown");
    const reply = replies.last();
    assert.equal(await versionsOf(reply), "2 of 2 versions");
    assert.ok(await reply.getByRole("button", { name: "Previous version" }).isEnabled());
    assert.ok(await reply.getByRole("button", { name: "Next version" }).isDisabled(), "the newest has no next");

    // Edit and resend: the new version of the message has ‹ 2/2 › too, and a reply of its own.
    const mine = page.locator("#messages > .message.user").last();
    await mine.locator("a.edit-link", { hasText: "Edit" }).click();
    const field = mine.locator(".edit-form textarea[name=content]");
    assert.equal(await field.inputValue(), original, "prefilled with the message");
    await field.fill(edited);
    if (js) await watchReply(page);
    await mine.getByRole("button", { name: "Save and resend" }).click();
    await page.locator("#messages > .message.user .content", { hasText: edited }).waitFor();
    await settled();
    if (js) {
      const seen = await samples(page);
      const growing = new Set(seen.filter((s) => s.streaming && s.length > 0).map((s) => s.length));
      assert.ok(growing.size >= 3, `the new reply streamed over ${growing.size} distinct moments: ${JSON.stringify(seen)}`);
    }
    const current = page.locator("#messages > .message.user");
    assert.equal(await current.count(), 1, "one user message on the path");
    assert.equal((await current.locator(".content").textContent()).trim(), edited);
    assert.equal(await versionsOf(current), "2 of 2 versions");
    assert.equal(await versionsOf(page.locator("#messages > .message.assistant").last()), null, "its reply has one version");
    assert.ok(!(await page.locator("#messages").textContent()).includes(original), "the other version is not shown");
    const sent = await lastRequest();
    assert.deepEqual(sent.messages.at(-1), { role: "user", content: edited });
    assert.ok(!JSON.stringify(sent.messages).includes("apples"), "the old text is not sent");
    await shot(page, `12-versions-edited${js ? "" : "-nojs"}`);

    // Previous version: the first message returns with its replies, the newest at each step.
    await current.getByRole("button", { name: "Previous version" }).click();
    await page.locator("#messages > .message.user .content", { hasText: original }).waitFor();
    const back = page.locator("#messages > .message.user");
    assert.equal(await versionsOf(back), "1 of 2 versions");
    const backReply = page.locator("#messages > .message.assistant").last();
    assert.equal(await versionsOf(backReply), "2 of 2 versions");
    // And its older reply, one more step back.
    await backReply.getByRole("button", { name: "Previous version" }).click();
    await page.locator("#messages > .message.assistant .version-number", { hasText: /^\s*1/ }).waitFor();
    assert.equal(await replyText(page.locator("#messages > .message.assistant").last()), firstReplyText);
    await shot(page, `12-versions-previous${js ? "" : "-nojs"}`);

    // The next message follows the chosen path: its prompt has the first version and its first reply.
    if (js) {
      await send(page, "And then?");
      const next = await lastRequest();
      const contents = next.messages.map((m) => m.content);
      assert.ok(contents.includes(original) && !contents.includes(edited), JSON.stringify(contents));
    }
    await page.reload();
    assert.equal((await page.locator("#messages > .message.user").first().locator(".content").textContent()).trim(), original, "the choice is kept");
    await context.close();
  });
}

test("export as Markdown and JSON, import the JSON as a new chat, refuse a broken file", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const question = "Export me: bananas & <cherries>";
  await startChat(page, SLOW_BASE, question);
  const chatId = chatIdOf(page);
  await waitForReplyEnd(page);
  await settleTitle(page, chatId);
  const title = await page.inputValue("#title");
  const messages = await shownMessages(page);
  assert.deepEqual(messages.filter((m) => m.role === "user").map((m) => m.text), [question]);

  const download = async (name, file) => {
    const link = page.locator(".chat-header a", { hasText: name });
    assert.notEqual(await link.getAttribute("download"), null, `${name} is a download link`);
    const response = await page.request.get(new URL(await link.getAttribute("href"), page.url()).href);
    assert.equal(response.status(), 200);
    assert.match(response.headers()["content-disposition"] ?? "", /^attachment/, `${name}: Content-Disposition`);
    const [event] = await Promise.all([page.waitForEvent("download"), link.click()]);
    const path = ARTIFACTS + file;
    await event.saveAs(path);
    return { name: event.suggestedFilename(), text: readFileSync(path, "utf8"), path };
  };

  await openChatMenu(page);
  const md = await download("Export .md", "export.md");
  assert.match(md.name, /\.md$/);
  assert.ok(md.text.startsWith(`# ${title}\n`), md.text.slice(0, 200));
  assert.ok(md.text.includes(`## You\n\n${question}\n`), md.text);
  assert.ok(md.text.includes("## Assistant"), md.text);
  assert.match(md.text, /word0 word1[\s\S]*const answer = 42;/);

  const json = await download("Export .json", "export.json");
  assert.match(json.name, /\.json$/);
  const exported = JSON.parse(json.text);
  assert.equal(exported.format, "chat-export");
  assert.equal(exported.version, 1);
  assert.equal(exported.title, title);
  assert.equal(exported.messages.length, messages.length, "every message");
  assert.deepEqual(exported.messages.map((m) => m.role), messages.map((m) => m.role));
  assert.ok(exported.messages.some((m) => m.role === "user" && m.content === question));
  assert.ok(exported.messages.some((m) => m.role === "assistant" && /word0 word1[\s\S]*const answer = 42;/.test(m.content)));

  // Import it from the home page: a new chat with the same messages.
  await page.goto(SLOW_BASE + "/");
  const chats = await page.locator("#chat-list li").count();
  await page.setInputFiles("#import-file", json.path);
  await page.locator(".import-form").locator("button[type=submit]", { hasText: "Import" }).click();
  await page.waitForURL((url) => /^\/chats\/[0-9a-f-]{36}$/.test(url.pathname) && !url.pathname.includes(chatId));
  assert.equal(await page.inputValue("#title"), title);
  assert.deepEqual(await shownMessages(page), messages, "the same messages as the exported chat");
  assert.equal(await page.locator("#chat-list li").count(), chats + 1, "one more chat in the sidebar");
  await shot(page, "13-imported");

  // A JSON file that is not an export: a readable error, and no chat.
  await page.goto(SLOW_BASE + "/");
  await page.setInputFiles("#import-file", { name: "broken.json", mimeType: "application/json", buffer: Buffer.from('{"nope":1}') });
  await page.locator(".import-form").locator("button[type=submit]", { hasText: "Import" }).click();
  await page.waitForLoadState();
  const error = page.getByText(/not a chat export/i);
  await error.first().waitFor({ timeout: 10_000 }).catch(() => {});
  assert.ok(await error.first().isVisible(), `a readable error; the page says: ${(await page.locator("body").innerText()).slice(0, 500)}`);
  await shot(page, "14-import-refused");
  await page.goto(SLOW_BASE + "/");
  assert.equal(await page.locator("#chat-list li").count(), chats + 1, "no chat was added");
  await context.close();
});

test("search from the sidebar finds chats and messages, and a result opens at the message", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const word = `quixotrel${Math.random().toString(36).replace(/[^a-z]/g, "").slice(0, 5)}`;
  await startChat(page, SLOW_BASE, `Tell me about the ${word} lighthouse at dusk`);
  const chatId = chatIdOf(page);
  await waitForReplyEnd(page);
  // Once the generated title is in, the chat is named after the word.
  await settleTitle(page, chatId);
  const title = `Notes on ${word}`;
  await page.fill("#title", title);
  await page.locator("#title-form").getByRole("button", { name: "Rename" }).click();
  await waitInPage(page, ({ id, title }) => document.querySelector(`#chat-item-${id} .chat-link`)?.textContent.trim() === title,
    { id: chatId, title }, "the sidebar shows the new title");

  await page.fill("#sidebar-q", word);
  await page.locator("#sidebar-q").press("Enter");
  await page.waitForURL((url) => url.pathname === "/search" && url.searchParams.get("q") === word);
  assert.equal(await page.inputValue("#search-q"), word);
  const chatHits = page.locator("ul.search-chats a", { hasText: title });
  assert.equal(await chatHits.count(), 1, "the chat, by its title");
  assert.equal(await chatHits.getAttribute("href"), `/chats/${chatId}`);

  const hits = page.locator("ol.search-results li").filter({ has: page.locator(`a[href^="/chats/${chatId}?"]`) });
  assert.equal(await hits.count(), 1, "the one message with the word");
  assert.equal(await hits.locator("p.snippet mark").textContent(), word);
  assert.match(await hits.locator("p.snippet").textContent(), new RegExp(`Tell me about the ${word} lighthouse`));
  const href = await hits.locator("a").first().getAttribute("href");
  const [, messageId] = href.match(new RegExp(`^/chats/${chatId}\\?before=\\d+#m-([0-9a-f-]{36})$`)) ?? [];
  assert.ok(messageId, `a link to the message: ${href}`);
  await shot(page, "15-search");

  await hits.locator("a").first().click();
  await page.waitForURL((url) => url.pathname === `/chats/${chatId}` && url.hash === `#m-${messageId}`);
  const target = page.locator(`#m-${messageId}`);
  assert.ok(await target.isVisible(), "the message is on the page");
  assert.ok(await target.evaluate((el) => el.classList.contains("user")));
  assert.match(await target.locator(".content").textContent(), new RegExp(word));
  await shot(page, "16-search-result-opened");

  // A word that is nowhere says so.
  await page.fill("#sidebar-q", `${word}zzz`);
  await page.locator("#sidebar-q").press("Enter");
  await page.waitForURL((url) => url.pathname === "/search" && url.searchParams.get("q") === `${word}zzz`);
  assert.ok(await page.getByText(`Nothing in your chats matches “${word}zzz”`).isVisible());
  await context.close();
});

test("after the first reply the model's title shows in the sidebar and the title field, without a reload", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await startChat(page, SLOW_BASE, "Name this little chat");
  const chatId = chatIdOf(page);
  await page.evaluate(() => { window.__samePage = true; });
  const link = page.locator(`#chat-item-${chatId} .chat-link`);
  // Until the reply is complete the chat is named after its first words.
  assert.equal((await link.textContent()).trim(), "Name this little chat");
  assert.equal(await page.inputValue("#title"), "Name this little chat");
  await waitForReplyEnd(page);
  await waitForGeneratedTitle(page, chatId);
  assert.equal(await page.evaluate(() => window.__samePage), true, "the page was not reloaded");
  await shot(page, "17-generated-title");
  await page.reload();
  assert.equal((await link.textContent()).trim(), GENERATED_TITLE, "kept");
  await context.close();
});

test("a markdown reply is formatted from its first block to its last while it streams, and nothing moves at the end", async () => {
  for (const [name, viewport] of [["desktop", { width: 1100, height: 900 }], ["phone", { width: 390, height: 844 }]]) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    await startChat(page, SLOW_BASE, "Hello there");
    await waitForReplyEnd(page);
    const replies = await page.locator(".message.assistant").count();
    // Every state of the newest reply's text while it streams: its visible text and HTML.
    await page.evaluate(() => {
      window.__states = [];
      window.__pwned = 0;
      const watch = () => {
        const content = document.querySelector(".message.status-streaming .content");
        if (!content || window.__content) return;
        window.__content = content;
        // The text without the Copy buttons that the page adds to code blocks at the end.
        const record = () => {
          const clone = content.cloneNode(true);
          clone.querySelectorAll("button.copy").forEach((button) => button.remove());
          const blocks = [...clone.children].map((block) => block.textContent);
          // Every block but the last is finished: it must never change.
          window.__states.push({ text: clone.textContent, html: clone.innerHTML, finished: blocks.slice(0, -1).join("\n"), all: blocks.join("\n") });
        };
        new MutationObserver(record).observe(content, { subtree: true, childList: true, characterData: true });
      };
      new MutationObserver(watch).observe(document.body, { subtree: true, childList: true });
    });
    await page.fill("#content", "Show me some markdown");
    await page.locator("#content").press("Enter");
    await page.waitForFunction((n) => document.querySelectorAll(".message.assistant").length > n, replies);
    await page.waitForFunction(() => document.querySelector(".status-streaming .content table tr:nth-child(2)") !== null, null, { timeout: 15_000 });
    await shot(page, `30-markdown-streaming-${name}`);
    await waitForReplyEnd(page);
    const result = await page.evaluate(() => ({
      states: window.__states,
      pwned: window.__pwned,
      same: document.querySelector(".message.assistant:last-child .content") === window.__content,
      final: (() => {
        const clone = window.__content?.cloneNode(true);
        clone?.querySelectorAll("button.copy").forEach((button) => button.remove());
        return clone?.innerHTML;
      })(),
      id: window.__content?.closest(".message")?.id,
    }));
    assert.equal(result.pwned, 0, "nothing the model wrote ran");
    assert.ok(result.same, "the end kept the text's element: nothing was swapped");
    assert.ok(result.states.length >= 10, `the text changed ${result.states.length} times`);
    const finalText = result.states[result.states.length - 1].text;
    const finalBlocks = result.states[result.states.length - 1].all;
    for (const state of result.states) {
      // No raw markup at any moment (the final text has none of these outside code).
      for (const mark of ["**", "`", "| ", "# ", "](", "$$", "\\pi"]) {
        assert.ok(!state.text.includes(mark), `"${mark}" shown while streaming: ${state.text}`);
      }
      assert.ok(!/<script/i.test(state.html), state.html);
    }
    // What was shown of each finished block is how it ends: the final blocks begin with every
    // earlier state's finished blocks (all but the open one at the end).
    for (const state of result.states) {
      assert.ok(finalBlocks.startsWith(state.finished), `moved: ${state.finished}\n---\n${finalBlocks}`);
    }
    assert.ok(await page.locator(".message.assistant").last().locator(".content math").count() >= 2, "math as MathML");
    assert.ok(await page.locator(".message.assistant").last().locator(".content table").isVisible());
    const noSideways = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
    assert.ok(noSideways, "nothing scrolls sideways");
    await shot(page, `31-markdown-done-${name}`);
    await page.reload();
    const reloaded = await page.locator(`#${result.id} .content`).evaluate((content) => {
      const clone = content.cloneNode(true);
      clone.querySelectorAll("button.copy").forEach((button) => button.remove());
      return clone.innerHTML;
    });
    assert.equal(reloaded, result.final, "a reload shows the same HTML");
    await context.close();
  }
});

test("Continue: a stopped reply goes on in the same message, with and without JavaScript", async () => {
  for (const javaScriptEnabled of [true, false]) {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 }, javaScriptEnabled });
    const page = await context.newPage();
    await page.goto(SLOW_BASE + "/");
    await page.fill("#content", "Write at length, please");
    await page.locator(".composer button.send").click();
    await page.waitForURL(/\/chats\//);
    const reply = page.locator(".message.assistant").last();
    const id = await reply.getAttribute("id");
    // Stop it part-way: the composer's Stop, or without JavaScript the reply's own form.
    if (javaScriptEnabled) {
      await page.waitForFunction(() => (document.querySelector(".status-streaming .content")?.textContent.length ?? 0) > 20);
      await page.locator("#composer button.stop-reply").click();
      await waitForReplyEnd(page);
    } else {
      await page.waitForTimeout(1500);
      await page.goto(page.url().split("#")[0]);
      await page.locator(`#${id} .stop-form button`).click();
    }
    const stopped = (await page.locator(`#${id} .content`).textContent()).trim();
    assert.ok(stopped.length > 0, "some text before Stop");
    const replies = await page.locator(".message.assistant").count();
    await page.locator(`#${id}`).getByRole("button", { name: "Continue" }).click();
    if (javaScriptEnabled) {
      await page.waitForFunction((id) => document.getElementById(id)?.classList.contains("status-streaming"), id);
      await waitForReplyEnd(page, 60_000);
    } else {
      // The page refreshes itself until the reply is written.
      for (let i = 0; i < 60 && await page.locator(".status-streaming").count() > 0; i++) {
        await page.waitForTimeout(1000);
        await page.goto(page.url().split("#")[0]);
      }
    }
    const grown = (await page.locator(`#${id} .content`).textContent()).trim();
    assert.ok(grown.startsWith(stopped) && grown.length > stopped.length, `grew from ${stopped.length} to ${grown.length}`);
    assert.equal(await page.locator(".message.assistant").count(), replies, "no new message");
    assert.equal(await page.locator(`#${id}`).count(), 1, "the same message");
    await shot(page, `32-continued-${javaScriptEnabled ? "js" : "nojs"}`);
    await context.close();
  }
});

test("a model's reasoning streams live under Thinking, then folds away apart from the answer", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  await startChat(page, SLOW_BASE, "Hello there");
  await waitForReplyEnd(page);
  // What the newest reply shows, whenever it changes.
  await page.evaluate(() => {
    window.__thinking = [];
    const record = () => {
      const replies = document.querySelectorAll(".message.assistant");
      const last = replies[replies.length - 1];
      const details = last?.querySelector(".thinking");
      const sample = {
        streaming: last?.classList.contains("status-streaming") ?? false,
        reasoning: details?.querySelector(".reasoning")?.textContent.length ?? 0,
        visible: details?.checkVisibility() ?? false,
        open: details?.open ?? false,
        answer: last?.querySelector(".content")?.textContent ?? "",
      };
      const prev = window.__thinking[window.__thinking.length - 1];
      if (!prev || JSON.stringify(prev) !== JSON.stringify(sample)) window.__thinking.push(sample);
    };
    new MutationObserver(record).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
  const replies = await page.locator(".message.assistant").count();
  await page.fill("#content", "Please think it over first");
  await page.locator("#content").press("Enter");
  await page.waitForFunction((n) => document.querySelectorAll(".message.assistant").length > n, replies);
  await page.waitForFunction(() => (document.querySelector(".status-streaming .live-reasoning")?.textContent.length ?? 0) > 0, null, { timeout: 10_000 })
    .then(() => shot(page, "18-thinking-live"), () => {});
  await waitForReplyEnd(page);

  const seen = await page.evaluate(() => window.__thinking);
  const live = seen.filter((s) => s.streaming && s.reasoning > 0 && s.visible && s.open);
  assert.ok(new Set(live.map((s) => s.reasoning)).size >= 3,
    `the reasoning grew, open and visible, over several moments: ${JSON.stringify(seen)}`);
  assert.ok(seen.every((s) => !s.answer.includes("reasoning")), "the reasoning never shows as the answer");

  const check = async () => {
    const reply = page.locator(".message.assistant").last();
    const thinking = reply.locator("details.thinking");
    assert.equal(await thinking.count(), 1);
    assert.equal(await thinking.getAttribute("open"), null, "folded once the reply is complete");
    assert.equal((await thinking.locator("summary").textContent()).trim(), "Thinking");
    assert.ok(await thinking.locator("summary").isVisible());
    const reasoning = thinking.locator(".reasoning");
    assert.equal(await reasoning.isVisible(), false, "the reasoning is folded away");
    const text = await reasoning.textContent();
    for (let n = 1; n <= 5; n++) assert.ok(text.includes(`Step ${n} of my reasoning.`), text);
    const answer = await reply.locator(".content").textContent();
    assert.match(answer, /word0 word1/);
    assert.ok(!answer.includes("reasoning"), `the answer is apart from the reasoning: ${answer}`);
    await thinking.locator("summary").click();
    assert.ok(await reasoning.isVisible(), "opens on a click");
  };
  await check();
  await shot(page, "19-thinking-done");
  await page.reload();
  await check();
  await context.close();
});

test("the context gauge follows the chat, marks the messages that no longer fit, and refuses one that cannot", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  await startChat(page, SLOW_BASE, "Gauge, please");
  await waitForReplyEnd(page);
  const chatId = chatIdOf(page);
  const origin = new URL(page.url()).origin;
  const gauge = page.locator("#context-gauge");
  const shown = async () => {
    const text = await gauge.locator(".context-text").textContent();
    const match = text.match(/^about ([\d,]+) of ([\d,]+) tokens/);
    assert.ok(match, `the gauge reads "${text}"`);
    return { used: Number(match[1].replace(/,/g, "")), context: Number(match[2].replace(/,/g, "")), text };
  };
  const api = async () => (await page.request.get(`${origin}/api/v1/chats/${chatId}/context`)).json();

  // Beside the composer: what the next prompt uses of the model's 4,096 tokens, as the API says
  // (once the finished reply has brought the gauge back).
  const stated = await api();
  await waitInPage(page, (n) => document.querySelector("#context-gauge .context-text")?.textContent
    .startsWith(`about ${n} of`), stated.used_tokens.toLocaleString("en-US"), "the gauge shows what the API says");
  const first = await shown();
  assert.equal(first.context, 4096);
  assert.equal(first.used, stated.used_tokens);
  assert.equal(await gauge.locator("meter").getAttribute("max"), "4096");
  assert.ok(await gauge.isVisible(), "the gauge is on screen");

  // After the next reply it has grown, without a reload.
  await send(page, "A second message for the gauge to count.");
  await waitInPage(page, (before) => {
    const m = document.querySelector("#context-gauge .context-text")?.textContent.match(/^about ([\d,]+) of/);
    return m && Number(m[1].replace(/,/g, "")) > before;
  }, first.used, "the gauge grows after the reply");
  assert.equal((await api()).used_tokens, (await shown()).used);

  // A model with a smaller context (slow-b: 640 tokens): the gauge follows the setting at once.
  await openSettings(page);
  await page.selectOption("#model", "slow-b");
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.locator("#chat-settings .saved").waitFor();
  await waitInPage(page, () => / of 640 tokens/.test(document.querySelector("#context-gauge")?.textContent ?? ""), null,
    "the gauge counts against slow-b's 640 tokens");
  await page.locator("#chat-settings summary").click();

  // Long messages until the oldest no longer fit: a line above the first one sent, drawn live.
  const paragraph = "A long paragraph about lighthouses, tides and the keepers who watched them. ".repeat(6);
  for (let i = 1; (await page.locator("#context-boundary").count()) === 0; i += 1) {
    assert.ok(i <= 6, "no message was ever left out");
    const before = await gauge.textContent();
    await send(page, `${i}. ${paragraph}`);
    // The new gauge is in, and the line (if any) is where it says (app.js moves it once htmx settles).
    await waitInPage(page, (text) => {
      const fresh = document.getElementById("context-gauge");
      if (!fresh || fresh.textContent === text) return false;
      const line = document.getElementById("context-boundary");
      const first = fresh.dataset.firstSentSeq;
      return first === undefined ? line === null : line?.nextElementSibling?.dataset.seq === first;
    }, before, "the gauge comes back after the reply, and the line follows it");
  }
  const where = async () => page.evaluate(() => {
    const line = document.getElementById("context-boundary");
    const next = line?.nextElementSibling;
    const above = [...document.querySelectorAll("#messages > li.message")].filter((li) =>
      line.compareDocumentPosition(li) & Node.DOCUMENT_POSITION_PRECEDING);
    return {
      text: line?.textContent.trim(),
      nextSeq: Number(next?.dataset.seq),
      above: above.length,
      dimmed: above.every((li) => Number(getComputedStyle(li).opacity) < 0.7),
      belowOpaque: getComputedStyle(next).opacity === "1",
      gaugeFull: document.getElementById("context-gauge").classList.contains("full"),
      gaugeText: document.querySelector("#context-gauge .context-text").textContent,
    };
  });
  const trimmed = await api();
  const live = await where();
  assert.ok(trimmed.left_out > 0, JSON.stringify(trimmed));
  assert.equal(live.nextSeq, trimmed.first_sent_seq, "the line is just above the first message sent");
  assert.ok(live.above >= trimmed.left_out && live.dimmed && live.belowOpaque, JSON.stringify(live));
  assert.match(live.text, /above this line no longer reach(es)? the model/);
  assert.ok(live.gaugeFull, "the gauge says the context is full");
  assert.match(live.gaugeText, new RegExp(`· ${trimmed.left_out} messages? left out`));
  // The model was not sent what is above the line.
  const sent = await lastRequest();
  const leftOut = await page.evaluate((seq) => [...document.querySelectorAll("#messages > li.message")]
    .filter((li) => Number(li.dataset.seq) < seq).map((li) => li.querySelector(".content")?.textContent.trim()), trimmed.first_sent_seq);
  assert.ok(leftOut.some((t) => t?.startsWith("Gauge, please")), JSON.stringify(leftOut));
  assert.ok(!sent.messages.some((m) => m.content === "Gauge, please"), "the first message was not sent");
  await page.locator("#context-boundary").scrollIntoViewIfNeeded();
  await shot(page, "36-context-trimmed");

  // After a reload the page draws the same line itself.
  await page.reload();
  assert.deepEqual(await where(), live);

  // A message that cannot fit even alone: refused with a readable error, nothing added, the text kept.
  const huge = "word ".repeat(1000);
  const messages = await page.locator("#messages > .message").count();
  await page.fill("#content", huge);
  await page.locator("#content").press("Enter");
  await waitInPage(page, () => /too long for the model's context/.test(document.getElementById("flash")?.textContent ?? ""), null,
    "the refusal in #flash");
  assert.equal(await page.locator("#messages > .message").count(), messages, "no message was added");
  assert.equal(await page.inputValue("#content"), huge, "the composer keeps the text");
  await shot(page, "37-context-refused");
  await context.close();
});

test("share by link: anyone opens a read-only copy without a cookie, later messages stay out, Revoke ends it", async () => {
  const owner = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await owner.newPage();
  await startChat(page, SLOW_BASE, "Share this chat, please");
  await waitForReplyEnd(page);
  await settleTitle(page, chatIdOf(page));
  const title = await page.inputValue("#title");

  await openChatMenu(page);
  await page.locator("#shares summary").click();
  await page.getByRole("button", { name: "Create a link" }).click();
  const link = page.locator("#shares .share-link");
  await link.first().waitFor();
  assert.equal(await link.count(), 1);
  assert.notEqual(await page.locator("#shares").getAttribute("open"), null, "the list stays open");
  await page.locator("#shares .copy-link").waitFor(); // a Copy button, once htmx has settled
  assert.equal(await page.locator("#shares .copy-link").count(), 1);
  const href = await link.getAttribute("href");
  assert.match(href, /^\/s\/[A-Za-z0-9_-]{43}$/);
  await shot(page, "38-share-link-made");

  // Someone else, with no cookie: the chat as it was, and nothing else.
  const stranger = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const other = await stranger.newPage();
  const origin = new URL(page.url()).origin;
  const response = await other.goto(origin + href);
  assert.equal(response.status(), 200);
  assert.equal(await other.locator("h1").textContent(), title);
  assert.match(await other.locator(".message.user .content").first().textContent(), /Share this chat, please/);
  assert.ok((await other.locator(".message.assistant .content").last().textContent()).includes("word0"));
  assert.equal(await other.locator(".sidebar, form, #composer").count(), 0, "no sidebar, no forms");
  assert.deepEqual(await stranger.cookies(), [], "no cookie was set");
  await shot(other, "39-shared-chat");

  // What is written afterwards does not reach the link.
  await send(page, "Something said after sharing");
  await other.reload();
  assert.equal(await other.getByText("Something said after sharing").count(), 0);

  // Revoke: the list is empty and the link is gone for everyone.
  await openChatMenu(page);
  if (await page.locator("#shares").getAttribute("open") === null) await page.locator("#shares summary").click();
  await page.locator("#shares").getByRole("button", { name: "Revoke" }).click();
  await waitInPage(page, () => document.querySelectorAll("#shares .share-link").length === 0, null, "the link leaves the list");
  const gone = await other.reload();
  assert.equal(gone.status(), 404);
  assert.match(await other.locator("body").textContent(), /not found/i);
  await shot(other, "40-shared-revoked");
  await stranger.close();
  await owner.close();
});

test("pins and folders arrange the sidebar in place, and deleting a folder keeps its chats", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  await page.goto(SLOW_BASE + "/");
  const origin = new URL(page.url()).origin;
  const ids = {};
  for (const title of ["Alpha", "Beta", "Gamma"]) {
    const response = await page.request.post(`${origin}/api/v1/chats`, { data: { title } });
    assert.equal(response.status(), 201);
    ids[title] = (await response.json()).id;
  }
  const section = (selector) => page.evaluate((s) =>
    [...document.querySelectorAll(`${s} .chat-link`)].map((a) => a.textContent.trim()), selector);

  await page.goto(`${origin}/chats/${ids.Alpha}`);
  await page.evaluate(() => { window.__sameDocument = true; });
  assert.deepEqual(await section("#chat-list"), ["Gamma", "Beta", "Alpha"]);
  await openChatMenu(page);
  await page.locator("#chat-organize").getByRole("button", { name: "Pin" }).click();
  await waitInPage(page, () => document.querySelector("#pinned-list .chat-link")?.textContent.trim() === "Alpha", null,
    "Alpha under Pinned");
  assert.deepEqual(await section("#chat-list"), ["Gamma", "Beta"]);
  assert.equal(await page.locator("#chat-organize button.pin").textContent(), "Unpin");
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "no reload");

  // A folder, made on "All chats" with a plain form.
  await page.goto(`${origin}/chats`);
  await page.fill("#new-folder", "Work");
  await page.getByRole("button", { name: "Create folder" }).click();
  await page.waitForURL(/\/chats#folders$/);
  assert.equal(await page.locator(".folders-manage input[name=name]").first().inputValue(), "Work");

  // Beta moved into it from its page: the sidebar shows the folder with Beta, in place.
  await page.goto(`${origin}/chats/${ids.Beta}`);
  await page.evaluate(() => { window.__sameDocument = true; });
  await openChatMenu(page);
  await page.selectOption("#folder_id", { label: "Work" });
  await page.locator("#chat-organize").getByRole("button", { name: "Move" }).click();
  await waitInPage(page, () => [...document.querySelectorAll(".folder .chat-link")].some((a) => a.textContent.trim() === "Beta"), null,
    "Beta in the folder Work");
  assert.equal(await page.locator(".folder summary .folder-name").textContent(), "Work");
  assert.deepEqual(await section("#chat-list"), ["Gamma"]);
  assert.deepEqual(await section("#pinned-list"), ["Alpha"]);
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "no reload");
  await shot(page, "41-pins-and-folders");
  await page.reload();
  assert.deepEqual(await section(".folder"), ["Beta"]);
  assert.equal(await page.inputValue("#folder_id"), await page.locator("#folder_id option", { hasText: "Work" }).getAttribute("value"));

  // Deleting the folder (after a confirmation) keeps Beta, among the other chats again.
  await page.goto(`${origin}/chats`);
  page.once("dialog", (dialog) => dialog.accept());
  await page.locator(".folders-manage").getByRole("button", { name: "Delete" }).click();
  await waitInPage(page, () => document.querySelector(".folders-manage li") === null, null, "the folder is gone");
  assert.deepEqual(await section("#chat-list"), ["Gamma", "Beta"]);
  assert.equal(await page.locator(".sidebar .folder").count(), 0);
  await context.close();
});

test("another device: a one-time link shows the chats in a second browser, which is then signed out", async () => {
  const first = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await first.newPage();
  await startChat(page, SLOW_BASE, "A chat for both browsers");
  await waitForReplyEnd(page);
  const chatUrl = page.url();
  // The chat's entry in a sidebar (by its link: the model renames the chat meanwhile).
  const entry = `.chat-link[href="${new URL(chatUrl).pathname}"]`;

  await page.getByRole("link", { name: "Your devices" }).click();
  await page.waitForURL(/\/devices$/);
  assert.equal(await page.locator(".device-list li").count(), 1);
  assert.match(await page.locator(".device-list li").textContent(), /this browser/);
  await page.getByRole("button", { name: "Link another browser" }).click();
  const link = page.locator(".device-link-made .device-link");
  await link.waitFor();
  const href = await link.getAttribute("href");
  const code = await page.locator(".link-code").textContent();
  assert.match(code, /^[0-9A-Z]{4}-[0-9A-Z]{4}$/);
  await page.locator(".device-link-made .copy-link").waitFor(); // a Copy button, once htmx has settled
  await shot(page, "42-device-link");

  // The second browser types the code; the link only asks until it is confirmed.
  const second = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const other = await second.newPage();
  const origin = new URL(page.url()).origin;
  await other.goto(origin + "/link");
  await other.fill("#code", code.toLowerCase());
  await other.getByRole("button", { name: "Continue" }).click();
  await other.waitForURL((url) => url.pathname === href);
  assert.equal(await other.locator(entry).count(), 0, "not yet");
  await shot(other, "43-device-link-confirm");
  await other.getByRole("button", { name: "Link this browser" }).click();
  await other.waitForURL(origin + "/");
  await other.locator(entry).first().waitFor();
  await other.goto(chatUrl);
  assert.match(await other.locator(".message.user .content").first().textContent(), /A chat for both browsers/);

  // The code was used: opening it again says so.
  const again = await other.goto(origin + href);
  assert.equal(again.status(), 410);
  assert.match(await other.locator("body").textContent(), /used already/);

  // The first browser sees both and signs the second out; the second's cookie stops working.
  await page.goto(origin + "/devices");
  assert.equal(await page.locator(".device-list li").count(), 2);
  page.once("dialog", (dialog) => dialog.accept());
  await page.locator(".device-list li", { hasNotText: "this browser" }).getByRole("button", { name: "Sign out" }).click();
  await waitInPage(page, () => document.querySelectorAll(".device-list li").length === 1, null, "one device left");
  const gone = await other.goto(chatUrl);
  assert.equal(gone.status(), 404);
  await other.goto(origin + "/");
  assert.equal(await other.locator(entry).count(), 0);
  await shot(other, "44-device-signed-out");
  await second.close();
  await first.close();
});

test("installable: Chromium reads the manifest and finds nothing that stops installing the app", async () => {
  const context = await launchWithProfile(mkdtempSync(join(tmpdir(), "chat-e2e-profile-")));
  try {
    const page = await context.newPage();
    await page.goto(BASE + "/");
    const cdp = await context.newCDPSession(page);
    const manifest = await cdp.send("Page.getAppManifest");
    assert.match(manifest.url, /\/static\/manifest\.webmanifest$/);
    assert.deepEqual(manifest.errors, [], JSON.stringify(manifest.errors));
    const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
    assert.deepEqual(installabilityErrors, [], JSON.stringify(installabilityErrors));
    // No service worker: nothing of a private page can be kept on the device.
    assert.equal(await page.evaluate(() => navigator.serviceWorker.getRegistrations().then((r) => r.length)), 0);
  } finally {
    await context.close();
  }
});

/** A one-page PDF whose page shows `text` (the offsets computed, so readers accept it). */
function pdfWithText(text) {
  const stream = `BT /F1 12 Tf 72 712 Td (${text}) Tj ET`;
  const objects = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
    `<< /Length ${stream.length} >>\nstream\n${stream}\nendstream`,
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
  ];
  let pdf = "%PDF-1.4\n";
  const offsets = [];
  objects.forEach((object, i) => {
    offsets.push(pdf.length);
    pdf += `${i + 1} 0 obj\n${object}\nendobj\n`;
  });
  const xref = pdf.length;
  pdf += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) pdf += `${String(offset).padStart(10, "0")} 00000 n \n`;
  pdf += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(pdf, "latin1");
}

test("attachments: files go with a message as chips that download the original; an image is refused readably", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  await startChat(page, SLOW_BASE, "Hello before the files");
  await waitForReplyEnd(page);
  await settleTitle(page, chatIdOf(page));
  const notes = Buffer.from("# Notes\n\n- <b>not markup</b>\n- pears\n");
  await page.setInputFiles("#files", [
    { name: "notes.md", mimeType: "text/markdown", buffer: notes },
    { name: "report.pdf", mimeType: "application/pdf", buffer: pdfWithText("Revenue grew by 7 percent") },
  ]);
  await shot(page, "45-attachments-chosen");
  await send(page, "What do my files say?");
  const bubble = page.locator(".message.user").last();
  const chips = bubble.locator("a.attachment");
  assert.equal(await chips.count(), 2);
  assert.match(await chips.first().textContent(), /notes\.md\s+\d+ bytes/);
  assert.match(await chips.last().textContent(), /report\.pdf/);
  assert.equal(await page.locator("#files").evaluate((input) => input.files.length), 0, "the composer is cleared");
  assert.equal(await page.locator(".message b").count(), 0, "nothing in a file is rendered");
  // The model got both files' text, labelled, before the question.
  const request = await lastRequest();
  const asked = request.messages.at(-1).content;
  assert.match(asked, /^Attached file “notes\.md”:\n```\n# Notes/);
  assert.match(asked, /Attached file “report\.pdf”:[\s\S]*Revenue grew by 7 percent/);
  assert.match(asked, /What do my files say\?$/);
  await shot(page, "46-attachments-sent");

  // A chip downloads the file as it was sent.
  const [download] = await Promise.all([page.waitForEvent("download"), chips.first().click()]);
  assert.equal(download.suggestedFilename(), "notes.md");
  assert.deepEqual(readFileSync(await download.path()), notes);

  // After a reload the chips are still there (stored with the message).
  await page.reload();
  assert.equal(await page.locator(".message.user").last().locator("a.attachment").count(), 2);

  // An image, to a model that cannot see: a readable refusal; the text and the file stay.
  const png = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex");
  await page.setInputFiles("#files", { name: "photo.png", mimeType: "image/png", buffer: png });
  const before = await page.locator(".message").count();
  await page.fill("#content", "And this picture?");
  await page.locator("#content").press("Enter");
  await waitInPage(page, () => /cannot see images/.test(document.getElementById("flash")?.textContent ?? ""), null,
    "the refusal shows in the flash region");
  assert.match(await page.locator("#flash").textContent(), /“photo\.png” is an image/);
  assert.equal(await page.locator(".message").count(), before, "nothing was added");
  assert.equal(await page.inputValue("#content"), "And this picture?");
  assert.equal(await page.locator("#files").evaluate((input) => input.files.length), 1);
  await shot(page, "47-attachment-refused");
  await context.close();
});

test("attachments without JavaScript: the plain form uploads the file and the page shows its chip", async () => {
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 }, javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(SLOW_BASE + "/");
  await page.setInputFiles("#files", { name: "todo.txt", mimeType: "text/plain", buffer: Buffer.from("buy milk") });
  await page.locator(".composer button[type=submit]").click();
  await page.waitForURL((url) => /^\/chats\/[0-9a-f-]{36}$/.test(url.pathname));
  const chip = page.locator(".message.user a.attachment");
  await chip.waitFor();
  assert.match(await chip.textContent(), /todo\.txt\s+8 bytes/);
  await shot(page, "48-attachment-no-js");
  await context.close();
});

test("no page of these flows reported a Content-Security-Policy violation", () => {
  assert.deepEqual(policyViolations, []);
});
