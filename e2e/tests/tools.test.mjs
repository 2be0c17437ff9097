// Tools, as a person sees them: a reply that calls fetch_url shows the call inside the reply
// while it runs (the tool, a spinner), then its result (folded, as text: the page's markup
// escaped), then the answer; a reload in the middle shows the step again, and the finished page
// shows it the same. On the app in front of the slow model (e2e/slow-lm.mjs), which calls
// fetch_url for its own /page (answered after 1.5 s) when the message says "tool".
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { SLOW_BASE, launch, shot, startChat, waitForReplyEnd, policyViolations } from "./helpers.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

for (const scheme of ["light", "dark"]) {
  test(`a call of a tool shows running, then its result, then the answer (${scheme})`, async () => {
    const context = await browser.newContext({ colorScheme: scheme, viewport: { width: 1100, height: 800 } });
    const page = await context.newPage();
    await startChat(page, SLOW_BASE, "Use a tool to read the opening hours");
    const step = page.locator(".message.assistant .tool-step").first();
    // Running: the tool's name and a spinner, while the page is being fetched.
    await step.and(page.locator(".running")).waitFor({ timeout: 15_000 });
    assert.equal(await step.locator(".tool-name").textContent(), "fetch_url");
    assert.ok(await step.locator(".spinner").isVisible(), "a spinner while it runs");
    await shot(page, `tool-step-running-${scheme}`);
    if (scheme === "light") {
      // A reload in the middle: the step is there again (saved at once), then goes on.
      await page.reload();
      await page.locator(".message.assistant .tool-step").first().waitFor({ timeout: 10_000 });
    }
    await waitForReplyEnd(page, 60_000);
    const done = page.locator(".message.assistant .tool-step").first();
    assert.ok(!(await done.getAttribute("class")).includes("running"), "the call ended");
    assert.match(await done.locator(".tool-state").textContent(), /\d+(\.\d)? (ms|s)/);
    // Opened: the arguments and the result, as text.
    await done.locator("summary").first().click();
    const result = await done.locator(".tool-result").first().textContent();
    assert.match(result, /The library opens at/);
    assert.match(result, /<img src=x onerror=alert\(1\)> is text here/);
    assert.equal(await page.evaluate(() => window.__pwned), undefined, "the page's script never ran");
    assert.equal(await page.locator(".tool-result img").count(), 0, "nothing of the result is HTML");
    assert.match(await done.locator(".tool-arguments").textContent(), /"url": "http:\/\/127\.0\.0\.1:\d+\/page"/);
    const answer = await page.locator(".message.assistant .content").last().textContent();
    assert.match(answer, /Let me look that up\./);
    assert.match(answer, /word0/);
    await shot(page, `tool-step-done-${scheme}`);
    // The page rendered afresh shows the same step.
    await page.reload();
    const again = page.locator(".message.assistant .tool-step").first();
    assert.equal(await again.locator(".tool-name").textContent(), "fetch_url");
    assert.ok(!(await again.getAttribute("class")).includes("running"));
    await context.close();
  });
}

test("the Tools page lists fetch_url", async () => {
  const page = await browser.newPage();
  await page.goto(SLOW_BASE + "/tools");
  assert.match(await page.locator("main").textContent(), /fetch_url/);
  await shot(page, "tools-page");
  await page.close();
  assert.deepEqual(policyViolations, []);
});
