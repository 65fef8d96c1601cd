// Drives Herald's dashboard in Debian's Chromium against a running Herald, the way a user
// would: sign in, overview, endpoints, search an event, replay it, dead letters, the
// signature verifier and a read-only portal link. One line per step; exit 1 on the first
// failed step, page error, or console error or warning.
//
//   scripts/browser-deps.sh && node tests/browser/dashboard.mjs
//
// Environment:
//   HERALD_URL             e.g. http://127.0.0.1:18080
//   HERALD_API_KEY         an API key (hk_…) of the tenant
//   HERALD_EVENT_ID        an event delivered once (and only once) to HERALD_ENDPOINT_ID
//   HERALD_ENDPOINT_ID     that endpoint
//   HERALD_PORTAL_URL      a read-only portal link of the same tenant (absolute, or a path)
//   HERALD_SIGNING_SECRET  the endpoint's whsec_… secret
//   SCREENSHOT_DIR         where the screenshots go (default: $TMPDIR/herald-dashboard)

import { launchChromium, shows, step, stepsPassed, STEP_TIMEOUT_MS, until, watch } from './harness.mjs';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const REPLAY_TIMEOUT_MS = 35_000;
const SLI_TIMEOUT_MS = 30_000;

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`dashboard test: set ${name} (see the top of tests/browser/dashboard.mjs)`);
    process.exit(2);
  }
  return value;
}

const baseUrl = required('HERALD_URL').replace(/\/+$/, '');
const apiKey = required('HERALD_API_KEY');
const eventId = required('HERALD_EVENT_ID');
const endpointId = required('HERALD_ENDPOINT_ID');
const portalUrl = new URL(required('HERALD_PORTAL_URL'), `${baseUrl}/`).href;
const signingSecret = required('HERALD_SIGNING_SECRET');
const screenshotDir = process.env.SCREENSHOT_DIR || join(tmpdir(), 'herald-dashboard');
mkdirSync(screenshotDir, { recursive: true });

async function screenshot(page, name) {
  await page.screenshot({ path: join(screenshotDir, name), fullPage: true });
}

/** A Standard Webhooks signature, computed independently of the page. */
function sign(secret, id, timestamp, body) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

const browser = await launchChromium();

let exitCode = 0;
try {
  const viewport = { width: 1366, height: 768 };
  const context = await browser.newContext({ viewport });
  const page = watch(await context.newPage(), 'dashboard');

  await step('sign in with the API key', async () => {
    await page.goto(`${baseUrl}/dashboard`);
    const keyInput = page.getByLabel('API key', { exact: true });
    await shows(keyInput, 'the login screen\'s "API key" input');
    await screenshot(page, '01-login.png');
    await keyInput.fill(apiKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await shows(page.getByRole('heading', { level: 1, name: 'Overview' }), 'the overview after signing in');
    await shows(page.getByRole('button', { name: 'Log out' }), 'the Log out button');
  });

  await step('overview draws its charts with at least one attempt', async () => {
    await shows(page.locator('svg.chart-svg'), 'an SVG chart');
    const attempts = page.locator('[data-kpi="attempts"]');
    await shows(attempts, 'the attempts total');
    // ClickHouse flushes attempts in batches (about a second): ask again until they show.
    await until('the attempts total to reach 1', async () => {
      const value = Number(await attempts.getAttribute('data-value'));
      if (value >= 1) return true;
      const refresh = page.getByRole('button', { name: 'Refresh' });
      if (await refresh.isEnabled()) await refresh.click();
      return false;
    }, SLI_TIMEOUT_MS, 1000);
    const charts = await page.locator('figure.chart svg.chart-svg').count();
    if (charts < 4) throw new Error(`expected 4 charts, found ${charts}`);
    await shows(page.locator('#endpoint-health'), 'the table of endpoints');
    await screenshot(page, '02-overview.png');
  });

  await step('endpoints page lists the endpoint with its breaker state', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Endpoints' }).click();
    const row = page.locator(`#endpoints tr[data-endpoint-id="${endpointId}"]`);
    await shows(row, `endpoint ${endpointId} in the endpoints table`);
    const breaker = (await row.locator('td').nth(2).innerText()).trim();
    if (!/^(closed|open|half open)\b/.test(breaker)) throw new Error(`breaker cell says "${breaker}"`);
    const budget = (await row.locator('td').nth(3).innerText()).trim();
    if (!/^100 % left\b/.test(budget) || !budget.includes('99.00 % over 30 days')) {
      throw new Error(`error budget cell says "${budget}"`);
    }
    await screenshot(page, '03-endpoints.png');
  });

  const delivery = page.locator(`section.delivery[data-endpoint-id="${endpointId}"]`);
  const attemptItems = delivery.locator('ol.timeline > li');

  await step('search finds the event and shows its timeline and explanation', async () => {
    const search = page.getByLabel('Find by id');
    await search.fill(eventId);
    await search.press('Enter');
    await page.waitForURL((url) => url.hash === `#/events/${eventId}`);
    await shows(delivery, `the delivery to endpoint ${endpointId} on the event page`);
    await until('one attempt in the timeline', async () => (await attemptItems.count()) === 1);
    const outcome = await attemptItems.first().getAttribute('data-outcome');
    if (outcome !== 'succeeded') throw new Error(`the attempt's outcome is ${outcome}, expected succeeded`);
    const explanation = (await delivery.locator('.explanation').innerText()).trim();
    if (!explanation.includes('routed')) throw new Error(`no explanation for the endpoint (got "${explanation}")`);
    await shows(page.locator('pre.json'), 'the payload');
    await screenshot(page, '04-event.png');
  });

  await step('replay adds a second attempt to the timeline', async () => {
    await delivery.getByRole('button', { name: /^Replay the delivery/ }).click();
    await until('a second attempt in the timeline', async () => (await attemptItems.count()) >= 2, REPLAY_TIMEOUT_MS);
    await shows(page.getByText('in the timeline below'), 'the message that the replayed attempt arrived');
    await screenshot(page, '05-event-replayed.png');
  });

  await step('dead letters page renders', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Dead letters' }).click();
    await shows(page.getByRole('heading', { level: 1, name: 'Dead letters' }), 'the dead letters page');
    await shows(page.locator('#dead-letters, #dead-letters-empty'), 'the list of dead letters (or that there are none)');
    await shows(page.getByRole('heading', { name: 'Bulk replay' }), 'the bulk replay form');
    await screenshot(page, '06-dead-letters.png');
  });

  await step('verifier accepts a valid signature and explains a tampered body', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Verify a signature' }).click();
    const id = randomUUID();
    const timestamp = String(Math.floor(Date.now() / 1000));
    const body = JSON.stringify({ type: 'invoice.paid', timestamp: new Date().toISOString(), data: { invoice: 'in_1', amount: 1200 } });
    await page.getByLabel('Signing secret').fill(signingSecret);
    await page.getByLabel('webhook-id').fill(id);
    await page.getByLabel('webhook-timestamp').fill(timestamp);
    await page.getByLabel('webhook-signature').fill(sign(signingSecret, id, timestamp, body));
    const bodyField = page.getByLabel('Body (exactly as received)');
    await bodyField.fill(body);
    const result = page.locator('#verify-result');
    await page.getByRole('button', { name: 'Verify' }).click();
    await shows(page.locator('#verify-result[data-verdict="verified"]'), 'the verdict that the signature verifies');
    if (!(await result.innerText()).includes('Verified')) throw new Error('the page does not say the signature verifies');

    await bodyField.fill(body.replace('1200', '1201'));
    await page.getByRole('button', { name: 'Verify' }).click();
    await shows(page.locator('#verify-result[data-verdict="failed"]'), 'the verdict that the tampered body does not verify');
    const why = (await result.locator('[data-problem="mismatch"]').innerText()).trim();
    if (!why.includes('Signature mismatch')) throw new Error(`no mismatch explanation (got "${why}")`);
    await screenshot(page, '07-verify.png');
  });

  await step('a read-only portal link opens the dashboard without an API key and offers no replay', async () => {
    const portalContext = await browser.newContext({ viewport });
    try {
      const portal = watch(await portalContext.newPage(), 'portal');
      await portal.goto(portalUrl);
      await shows(portal.getByRole('heading', { level: 1, name: 'Overview' }), 'the overview of the portal link');
      await shows(portal.getByText('read-only view'), 'the "read-only view" notice');
      if (await portal.getByRole('button', { name: 'Log out' }).isVisible()) throw new Error('a portal view offers Log out');
      const search = portal.getByLabel('Find by id');
      await search.fill(eventId);
      await search.press('Enter');
      const portalDelivery = portal.locator(`section.delivery[data-endpoint-id="${endpointId}"]`);
      await shows(portalDelivery.locator('ol.timeline > li'), 'the event\'s timeline in the portal');
      const replayButtons = portal.getByRole('button', { name: /replay/i });
      const count = await replayButtons.count();
      for (let index = 0; index < count; index += 1) {
        if (await replayButtons.nth(index).isEnabled()) throw new Error('an enabled replay button is shown in a read-only portal');
      }
      await shows(portal.getByText('read-only view: replay is not available'), 'the notice that replay is not available');
      if (new URL(portal.url()).pathname !== new URL(portalUrl).pathname) throw new Error(`the portal address changed to ${portal.url()}`);
      await screenshot(portal, '08-portal.png');
    } finally {
      await portalContext.close();
    }
  });

  console.log(`all ${stepsPassed()} steps passed; screenshots in ${screenshotDir}`);
} catch (error) {
  console.error(`FAIL ${error.message}`);
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
