// Accounts in a browser: an app with AUTH_MODE=oidc behind our nginx, signing in through npm's
// oauth2-mock-server (a provider we did not write). A visitor is sent to sign in and comes back
// signed in; their chat shows on their second browser and not to another person; the admin sees
// both people on /admin; signing out ends that browser's sign-in.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launch, shot, waitForReplyEnd } from "./helpers.mjs";

const ACCOUNTS = process.env.E2E_ACCOUNTS_URL; // nginx in front of an app with AUTH_MODE=oidc
const PROVIDER = process.env.E2E_OIDC_URL; // the mock provider

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** A browser context whose sign-ins at the provider are `name`'s (the mock's `person` cookie). */
async function personContext(name, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, ...options });
  await context.addCookies([{ name: "person", value: name, url: PROVIDER }]);
  return context;
}

test("people sign in with the team's provider and each sees only their own chats", { skip: !ACCOUNTS }, async () => {
  const alice = await personContext("alice");
  const page = await alice.newPage();
  // Not signed in: the provider's round trip lands back on the page asked for, signed in.
  await page.goto(ACCOUNTS + "/chats");
  await page.waitForURL(`${ACCOUNTS}/chats`);
  assert.match(await page.locator("#account").innerText(), /Signed in as alice/);
  await page.goto(ACCOUNTS + "/");
  await page.fill("#content", "A question from Alice");
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/chats\/[0-9a-f-]{36}$/);
  await waitForReplyEnd(page);
  const chat = new URL(page.url()).pathname;
  await shot(page, "accounts-signed-in-light");

  // Alice's phone: the same chat, in the sidebar.
  const phone = await personContext("alice", { viewport: { width: 390, height: 844 }, colorScheme: "dark" });
  const phonePage = await phone.newPage();
  await phonePage.goto(ACCOUNTS + chat);
  await phonePage.waitForURL(ACCOUNTS + chat);
  assert.match(await phonePage.locator(".message.user").first().innerText(), /A question from Alice/);
  await shot(phonePage, "accounts-second-device-dark");

  // Bob sees none of it: his sidebar is empty and her chat is not found.
  const bob = await personContext("bob");
  const bobPage = await bob.newPage();
  await bobPage.goto(ACCOUNTS + "/");
  await bobPage.waitForURL(`${ACCOUNTS}/`);
  assert.match(await bobPage.locator("#account").innerText(), /Signed in as bob/);
  assert.equal(await bobPage.locator(`#sidebar a[href="${chat}"]`).count(), 0);
  const theirs = await bobPage.goto(ACCOUNTS + chat);
  assert.equal(theirs.status(), 404);

  // Alice is an admin (the provider's groups): she sees both people and what they used.
  await page.goto(ACCOUNTS + "/admin");
  const users = await page.locator(".users-table").innerText();
  assert.match(users, /alice@example\.org/);
  assert.match(users, /bob@example\.org/);
  await shot(page, "accounts-admin-light");
  // Bob is not.
  await bobPage.goto(ACCOUNTS + "/admin");
  assert.equal(await bobPage.locator(".users-table").count(), 0);

  // Signing out ends this browser's sign-in (through the provider's end-session page, back to
  // /signed-out); the phone stays signed in.
  await page.goto(ACCOUNTS + "/");
  await page.locator("#account button", { hasText: "Sign out" }).click();
  await page.waitForURL(`${ACCOUNTS}/signed-out`);
  assert.match(await page.locator("h1").innerText(), /You are signed out/);
  await shot(page, "accounts-signed-out-light");
  await phonePage.reload();
  assert.match(await phonePage.locator(".message.user").first().innerText(), /A question from Alice/);
  for (const context of [alice, phone, bob]) await context.close();
});
