// Accessibility, as axe-core (the engine behind Lighthouse's audit) and a keyboard find it: every
// page, light and dark, desktop and phone, with no serious or critical violation; every control
// reachable with Tab and showing where the focus is; a streaming reply a polite live region.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { SLOW_BASE, launch, shot, startChat, waitForReplyEnd } from "./helpers.mjs";

const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
const VIEWPORTS = { desktop: { width: 1100, height: 860 }, phone: { width: 390, height: 844 } };

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** axe's serious and critical findings on the page as it is now, one line each. */
async function seriousViolations(page) {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: AXE });
  const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.slice(0, 4).map((n) => n.target.join(" ")).join(" | ")}`);
}

/** A chat with a finished markdown reply (math, a table, code) and a shared link to it. */
async function chatWithLink(page) {
  await startChat(page, SLOW_BASE, "Show me some markdown");
  await waitForReplyEnd(page);
  const chat = new URL(page.url()).pathname;
  await page.locator("#chat-menu > summary").click();
  await page.locator("#shares summary").click();
  await page.getByRole("button", { name: "Create a link" }).click();
  const link = await page.locator("#shares .share-link").first().getAttribute("href");
  return { chat, link };
}

test("axe finds no serious or critical violation on any page, light and dark, desktop and phone", async () => {
  const found = [];
  for (const colorScheme of ["light", "dark"]) {
    for (const [name, viewport] of Object.entries(VIEWPORTS)) {
      // The CSP refuses injected scripts; axe is injected only in this test's browser.
      const context = await browser.newContext({ bypassCSP: true, colorScheme, viewport });
      const page = await context.newPage();
      const { chat, link } = await chatWithLink(page);
      const pages = ["/", chat, "/chats", "/search?q=markdown", "/devices", link, "/no-such-page"];
      for (const path of pages) {
        await page.goto(SLOW_BASE + path);
        for (const v of await seriousViolations(page)) found.push(`${colorScheme} ${name} ${path}: ${v}`);
      }
      // The chat's menu open, and on a phone the sidebar's drawer.
      await page.goto(SLOW_BASE + chat);
      await page.locator("#chat-menu > summary").click();
      for (const v of await seriousViolations(page)) found.push(`${colorScheme} ${name} ${chat} (menu open): ${v}`);
      await shot(page, `40-menu-${colorScheme}-${name}`);
      if (name === "phone") {
        await page.goto(SLOW_BASE + chat);
        await page.locator(".drawer-open").click();
        await page.waitForFunction(() => getComputedStyle(document.getElementById("sidebar")).visibility === "visible");
        await page.waitForTimeout(300); // the drawer's slide (0.18 s) is over
        for (const v of await seriousViolations(page)) found.push(`${colorScheme} ${name} ${chat} (drawer open): ${v}`);
        await shot(page, `41-drawer-${colorScheme}`);
      }
      await page.goto(SLOW_BASE + chat);
      await shot(page, `42-chat-${colorScheme}-${name}`);
      await context.close();
    }
  }
  assert.deepEqual(found, []);
});

test("on a phone the chat comes first, the sidebar is a drawer (without JavaScript too), nothing scrolls sideways", async () => {
  for (const javaScriptEnabled of [true, false]) {
    const context = await browser.newContext({ viewport: VIEWPORTS.phone, javaScriptEnabled });
    const page = await context.newPage();
    await page.goto(SLOW_BASE + "/");
    await page.fill("#content", "Show me some markdown");
    await page.locator(".composer button.send").click();
    await page.waitForURL(/\/chats\//);
    if (javaScriptEnabled) await waitForReplyEnd(page);
    const layout = await page.evaluate(() => {
      const sidebar = document.getElementById("sidebar").getBoundingClientRect();
      const composer = document.querySelector("#composer").getBoundingClientRect();
      return {
        sidebarShown: getComputedStyle(document.getElementById("sidebar")).visibility === "visible" && sidebar.right > 0,
        composerBottom: composer.bottom,
        height: window.innerHeight,
        wide: document.documentElement.scrollWidth - window.innerWidth,
      };
    });
    assert.equal(layout.sidebarShown, false, "the chat first: the drawer is closed");
    assert.ok(layout.height - layout.composerBottom < 4, `the composer at the bottom: ${JSON.stringify(layout)}`);
    assert.ok(layout.wide <= 1, `nothing wider than the screen: ${layout.wide}px`);
    await page.locator(".drawer-open").click();
    await page.waitForFunction(() => getComputedStyle(document.getElementById("sidebar")).visibility === "visible");
    assert.ok(await page.locator("#sidebar .chat-link").first().isVisible(), "the drawer shows the chats");
    await page.waitForTimeout(300); // the drawer's slide (0.18 s) is over
    await shot(page, `43-phone-drawer-${javaScriptEnabled ? "js" : "nojs"}`);
    await page.locator(".drawer-close").click();
    await page.waitForFunction(() => getComputedStyle(document.getElementById("sidebar")).visibility === "hidden");
    await context.close();
  }
});

test("every control of the chat page is reachable with Tab and shows where the focus is", async () => {
  const context = await browser.newContext({ viewport: VIEWPORTS.desktop });
  const page = await context.newPage();
  await startChat(page, SLOW_BASE, "Show me some markdown");
  await waitForReplyEnd(page);
  await page.locator("body").click({ position: { x: 5, y: 5 } });
  const reached = new Set();
  const unmarked = [];
  for (let i = 0; i < 80; i++) {
    await page.keyboard.press("Tab");
    const focus = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const style = getComputedStyle(el);
      const box = el.closest(".composer-box");
      const marked = (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0)
        || (box && getComputedStyle(box).boxShadow !== "none")
        || (el.matches(".file-input") && getComputedStyle(el.nextElementSibling).outlineStyle !== "none");
      const name = el.id ? `#${el.id}` : `${el.tagName.toLowerCase()}.${[...el.classList].join(".")} ${(el.textContent || el.getAttribute("aria-label") || "").trim().slice(0, 30)}`;
      return { name, marked };
    });
    if (!focus) continue;
    reached.add(focus.name);
    if (!focus.marked) unmarked.push(focus.name);
  }
  assert.deepEqual(unmarked, [], "a visible focus on every control");
  const names = [...reached].join("\n");
  for (const control of ["#title", "summary.button", "#content", "#files", "button.primary.send"]) {
    assert.ok(names.includes(control), `${control} is reachable by Tab:\n${names}`);
  }
  // The chat's menu opens with the keyboard and closes with Esc, the focus back on its button.
  await page.locator("#chat-menu > summary").focus();
  await page.keyboard.press("Enter");
  assert.notEqual(await page.locator("#chat-menu").getAttribute("open"), null);
  await page.keyboard.press("Escape");
  assert.equal(await page.locator("#chat-menu").getAttribute("open"), null);
  assert.equal(await page.evaluate(() => document.activeElement?.matches("#chat-menu > summary")), true);
  // A reply being written is a polite live region, busy until it ends.
  await page.fill("#content", "Show me some markdown");
  await page.keyboard.press("Enter");
  const live = page.locator(".message.status-streaming .content");
  await live.waitFor();
  assert.equal(await live.getAttribute("aria-live"), "polite");
  assert.equal(await live.getAttribute("aria-busy"), "true");
  await waitForReplyEnd(page);
  await context.close();
});
