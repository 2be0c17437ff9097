import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

export const BASE = process.env.E2E_BASE_URL; // nginx in front of the app with llama-server
export const SLOW_BASE = process.env.E2E_SLOW_BASE_URL; // nginx in front of an app with a slow model
export const LLAMA = process.env.E2E_LLAMA_URL; // llama-server itself (for /slots)
export const EMBEDDED_BASE = process.env.E2E_EMBEDDED_BASE_URL; // nginx in front of an app with the embedded engine
export const FIRST_RUN = process.env.E2E_FIRST_RUN_URL; // an embedded app downloading its model (directly, as `cargo run` serves)
export const FAKE_HUB = process.env.E2E_FAKE_HUB_URL; // the stand-in hub it downloads from
export const ARTIFACTS = new URL("../artifacts/", import.meta.url).pathname;
mkdirSync(ARTIFACTS, { recursive: true });

/** Every Content-Security-Policy violation any page of any context reported, with its page. */
export const policyViolations = [];

/** The browser; every context it makes reports its pages' CSP violations into
 *  `policyViolations`, so that each suite can check that none of its flows had one. */
const CHROMIUM = {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--disable-quic"],
};

/** A browser with a profile on disk (not incognito, as installing an app needs). */
export async function launchWithProfile(dir) {
  return chromium.launchPersistentContext(dir, CHROMIUM);
}

export async function launch() {
  const browser = await chromium.launch(CHROMIUM);
  const newContext = browser.newContext.bind(browser);
  browser.newContext = async (options) => {
    const context = await newContext(options);
    await context.addInitScript(() => {
      document.addEventListener("securitypolicyviolation", (e) => {
        console.error(`Refused to ${e.effectiveDirective}: ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`);
      });
    });
    context.on("console", (message) => {
      if (/Content Security Policy|Refused to/i.test(message.text())) {
        policyViolations.push(`${message.page()?.url()} (${message.location().url}): ${message.text()}`);
      }
    });
    return context;
  };
  return browser;
}

export async function shot(page, name) {
  await page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: true });
}

/** Starts a chat from the home page with a first message; resolves on the chat page. */
export async function startChat(page, base, text) {
  await page.goto(base + "/");
  await page.fill("#content", text);
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/chats\/[0-9a-f-]{36}$/);
}

/** Records (time, text length) of the newest reply whenever it changes, in the page. */
export async function watchReply(page) {
  await page.evaluate(() => {
    window.__samples = [];
    const record = () => {
      const replies = document.querySelectorAll(".message.assistant");
      const last = replies[replies.length - 1];
      const text = last?.querySelector(".content")?.textContent ?? "";
      const streaming = last?.classList.contains("status-streaming") ?? false;
      const prev = window.__samples[window.__samples.length - 1];
      if (!prev || prev.length !== text.length || prev.streaming !== streaming) {
        window.__samples.push({ t: performance.now(), length: text.length, streaming });
      }
    };
    new MutationObserver(record).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    record();
  });
}

export async function samples(page) {
  return page.evaluate(() => window.__samples);
}

export async function waitForReplyEnd(page, timeout = 60_000) {
  await page.waitForFunction(() => document.querySelector(".message.status-streaming") === null, null, { timeout });
}

export async function newestReplyText(page) {
  return page.locator(".message.assistant").last().locator(".content").first().textContent();
}
