// What the browser tests share: Debian's Chromium, a watch on every page for console errors
// and warnings and uncaught errors, steps that log one line each and fail on the first
// problem, and waits with deadlines.

import { chromium } from 'playwright-core';

export const STEP_TIMEOUT_MS = 20_000;

/** Console errors and warnings, and uncaught page errors, of every page watched. */
const pageProblems = [];

/** Records `page`'s problems under `label`; `expectedConsole(message)` excuses one. */
export function watch(page, label, { expectedConsole = () => false } = {}) {
  page.on('console', (message) => {
    if ((message.type() === 'error' || message.type() === 'warning') && !expectedConsole(message)) {
      const where = message.location();
      pageProblems.push(`${label}: console ${message.type()}: ${message.text()}${where.url ? ` (${where.url}:${where.lineNumber})` : ''}`);
    }
  });
  page.on('pageerror', (error) => pageProblems.push(`${label}: page error: ${error.message}`));
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  return page;
}

/** Waits for `locator` to be visible, failing with what was expected. */
export async function shows(locator, what, timeoutMs = STEP_TIMEOUT_MS) {
  try {
    await locator.first().waitFor({ state: 'visible', timeout: timeoutMs });
  } catch {
    throw new Error(`${what} did not show within ${timeoutMs / 1000} s`);
  }
}

/** Polls `check` until it returns true or the deadline passes. */
export async function until(what, check, timeoutMs = STEP_TIMEOUT_MS, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

let stepNumber = 0;

/** Runs one step: one line when it passes; an error naming it when it or a page fails. */
export async function step(name, body) {
  stepNumber += 1;
  const started = Date.now();
  try {
    await body();
  } catch (error) {
    throw new Error(`step ${stepNumber} (${name}) failed: ${error.message.split('\n')[0]}`);
  }
  if (pageProblems.length) {
    throw new Error(`step ${stepNumber} (${name}): the page reported problems:\n  ${pageProblems.join('\n  ')}`);
  }
  console.log(`ok ${stepNumber} ${name} (${Date.now() - started} ms)`);
}

/** How many steps have passed. */
export function stepsPassed() {
  return stepNumber;
}

export function launchChromium() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
