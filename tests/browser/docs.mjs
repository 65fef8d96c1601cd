// Drives Herald's API reference page (/docs) in Debian's Chromium against a running Herald: the
// contents list every operation of /openapi.json, the filter narrows them, a deep link opens
// POST /v1/events with its body's properties, webhooks (when the document has any) show their
// signature header, the filter is reachable by keyboard, the layout holds on a narrow screen,
// and a document that cannot be loaded is reported on the page. One line per step; exit 1 on
// the first failed step, page error, or console error or warning.
//
//   scripts/browser-deps.sh && node tests/browser/docs.mjs
//
// Environment:
//   HERALD_URL      e.g. http://127.0.0.1:18080 (the page is $HERALD_URL/docs)
//   SCREENSHOT_DIR  where the screenshots go (default: $TMPDIR/herald-docs)

import { launchChromium, shows, step, stepsPassed, STEP_TIMEOUT_MS, until, watch } from './harness.mjs';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'];

const baseUrl = (process.env.HERALD_URL || '').replace(/\/+$/, '');
if (!baseUrl) {
  console.error('docs test: set HERALD_URL (see the top of tests/browser/docs.mjs)');
  process.exit(2);
}
const docsUrl = `${baseUrl}/docs`;
const screenshotDir = process.env.SCREENSHOT_DIR || join(tmpdir(), 'herald-docs');
mkdirSync(screenshotDir, { recursive: true });

function sameSet(what, actual, expected) {
  const missing = [...expected].filter((x) => !actual.has(x));
  const extra = [...actual].filter((x) => !expected.has(x));
  if (missing.length || extra.length) {
    throw new Error(`${what}: missing ${JSON.stringify(missing.slice(0, 5))}, unexpected ${JSON.stringify(extra.slice(0, 5))}`);
  }
}

/** The document's operations, read independently of the page: "METHOD /path" and "webhook METHOD name". */
function documentOperations(document) {
  const operations = [];
  for (const [kind, map] of [['path', document.paths], ['webhook', document.webhooks]]) {
    for (const [key, item] of Object.entries(map || {})) {
      for (const method of HTTP_METHODS.filter((m) => item && item[m])) {
        const op = item[method];
        const label = kind === 'path' ? `${method.toUpperCase()} ${key}` : `webhook ${method.toUpperCase()} ${key}`;
        const text = [method, key, op.summary, op.operationId, ...(op.tags || [])].join(' ').toLowerCase();
        operations.push({ kind, label, text, op });
      }
    }
  }
  return operations;
}

/** "METHOD /path" of every operation section in the reference (or in the contents, with `nav`). */
async function renderedLabels(locator) {
  return new Set(await locator.evaluateAll((nodes) => nodes.map((node) => {
    const method = node.querySelector('.method').textContent.trim();
    const key = (node.querySelector('.op-path, .nav-path')).textContent.trim();
    return node.closest('.webhook, [data-group="webhooks"]') ? `webhook ${method} ${key}` : `${method} ${key}`;
  })));
}

const documentResponse = await fetch(`${baseUrl}/openapi.json`, { signal: AbortSignal.timeout(STEP_TIMEOUT_MS) });
if (!documentResponse.ok) {
  console.error(`FAIL fetching ${baseUrl}/openapi.json: ${documentResponse.status}`);
  process.exit(1);
}
const openapi = await documentResponse.json();
const operations = documentOperations(openapi);
const webhookOperations = operations.filter((o) => o.kind === 'webhook');
const schemaNames = Object.keys(openapi.components?.schemas || {});

const browser = await launchChromium();

let exitCode = 0;
try {
  const viewport = { width: 1366, height: 768 };
  const context = await browser.newContext({ viewport });
  const page = watch(await context.newPage(), 'docs');
  const nav = page.getByRole('navigation', { name: 'API contents' });
  const navOperations = nav.locator('a.nav-op');
  const sections = page.locator('main section.operation');

  await step('open /docs and wait for the contents to list operations', async () => {
    const response = await page.goto(docsUrl);
    if (!response.ok()) throw new Error(`GET /docs answered ${response.status()}`);
    await shows(navOperations, 'an operation in the contents');
    await shows(page.getByRole('heading', { level: 1, name: new RegExp(openapi.info.title) }), 'the document title');
    const version = (await page.locator('#api-version').innerText()).trim();
    if (!version.includes(openapi.info.version)) throw new Error(`the header shows "${version}", not version ${openapi.info.version}`);
    for (const landmark of ['banner', 'navigation', 'main']) await shows(page.getByRole(landmark), `the ${landmark} landmark`);
    await page.screenshot({ path: join(screenshotDir, '01-top.png') });
  });

  await step('the contents list POST /v1/events and GET /v1/deliveries', async () => {
    const listed = await renderedLabels(navOperations);
    for (const expected of ['POST /v1/events', 'GET /v1/deliveries']) {
      if (!listed.has(expected)) throw new Error(`${expected} is not in the contents`);
    }
  });

  await step(`every operation of the document is rendered (${operations.length}, ${webhookOperations.length} webhooks)`, async () => {
    const expected = new Set(operations.map((o) => o.label));
    const count = await sections.count();
    if (count !== operations.length) throw new Error(`${count} operation sections for ${operations.length} operations in the document`);
    sameSet('operation sections', await renderedLabels(sections), expected);
    sameSet('operations in the contents', await renderedLabels(navOperations), expected);
    const schemaSections = await page.locator('main section.schema').count();
    if (schemaSections !== schemaNames.length) throw new Error(`${schemaSections} schema sections for ${schemaNames.length} schemas`);
    // Every section has its responses: an empty shell would pass the counts above.
    const withoutResponses = await sections.evaluateAll((nodes) => nodes.filter((n) => !n.querySelector('.response .status')).map((n) => n.id));
    if (withoutResponses.length) throw new Error(`no responses rendered in ${withoutResponses.join(', ')}`);
  });

  const search = page.getByLabel('Filter operations');

  await step('typing "replay" in the filter narrows the contents to the operations about replay', async () => {
    const expected = new Set(operations.filter((o) => o.text.includes('replay')).map((o) => o.label));
    if (!expected.size || expected.size === operations.length) throw new Error(`the document has ${expected.size} operations about replay: not a useful check`);
    await search.fill('replay');
    const visibleNav = nav.locator('a.nav-op:visible');
    await until(`${expected.size} operations in the contents`, async () => (await visibleNav.count()) === expected.size);
    sameSet('operations left in the contents', await renderedLabels(visibleNav), expected);
    sameSet('operation sections left', await renderedLabels(page.locator('main section.operation:visible')), expected);
    const emptyGroups = await page.locator('main section.group:visible, nav .nav-group:visible').evaluateAll((groups) => groups
      .filter((group) => !group.querySelector(':scope > section:not([hidden]), :scope > ul > li:not([hidden])'))
      .map((group) => group.querySelector('h2').textContent));
    if (emptyGroups.length) throw new Error(`groups left showing with nothing in them: ${emptyGroups.join(', ')}`);
    await search.fill('');
    await until('every operation back in the contents', async () => (await visibleNav.count()) === operations.length);
  });

  const createEvent = page.locator('section.operation[data-method="POST"][data-path="/v1/events"]');

  await step('a deep link opens POST /v1/events with its body\'s type and payload properties', async () => {
    const link = navOperations.filter({ has: page.locator('.method', { hasText: /^POST$/ }) })
      .filter({ has: page.locator('.nav-path', { hasText: /^\/v1\/events$/ }) });
    const href = await link.first().getAttribute('href');
    if (!href || !href.startsWith('#')) throw new Error(`the contents link to POST /v1/events is "${href}"`);
    // A fresh load: the section exists only once the script has rendered the document.
    const deepPage = watch(await context.newPage(), 'docs (deep link)');
    try {
      await deepPage.goto(`${docsUrl}${href}`);
      const target = deepPage.locator('section.operation[data-method="POST"][data-path="/v1/events"]');
      await shows(target.locator('.request-body .prop-name', { hasText: /^payload$/ }), 'the payload property of the request body');
      await shows(target.locator('.request-body .prop-name', { hasText: /^type$/ }), 'the type property of the request body');
      await until('the section to be selected and scrolled to', async () => {
        const box = await target.boundingBox();
        return box && box.y >= 0 && box.y < 100 && (await target.getAttribute('class')).includes('is-selected');
      });
    } finally {
      await deepPage.close();
    }
    // Choosing in the contents changes the address, so the link can be shared.
    await link.first().click();
    await page.waitForURL((url) => url.hash === href);
    await until('POST /v1/events to be marked selected', async () => (await createEvent.getAttribute('class')).includes('is-selected'));
    await createEvent.screenshot({ path: join(screenshotDir, '02-post-v1-events.png') });
  });

  if (webhookOperations.length) {
    await step('the Webhooks section shows the webhook-signature header', async () => {
      const webhooks = page.locator('section#webhooks');
      await shows(webhooks.locator('.param-name', { hasText: /^webhook-signature$/ }), 'webhook-signature in the Webhooks section');
      const names = new Set(await webhooks.locator('.param-name').allInnerTexts());
      for (const { op } of webhookOperations) {
        for (const parameter of op.parameters || []) {
          if (parameter.name && !names.has(parameter.name)) throw new Error(`parameter ${parameter.name} of a webhook is not shown`);
        }
      }
      await webhooks.screenshot({ path: join(screenshotDir, '03-webhooks.png') });
    });
  } else {
    console.log('-- the document has no webhooks: their step is skipped');
  }

  await step('Tab reaches the filter, which shows its focus', async () => {
    await page.goto(docsUrl);
    await shows(navOperations, 'the contents after reloading');
    for (let presses = 0; presses < 4; presses += 1) {
      await page.keyboard.press('Tab');
      if (await search.evaluate((node) => node === document.activeElement)) break;
    }
    if (!(await search.evaluate((node) => node === document.activeElement))) throw new Error('four Tabs did not reach the filter');
    const outline = await search.evaluate((node) => getComputedStyle(node).outlineStyle);
    if (outline === 'none') throw new Error('the focused filter shows no outline');
  });

  await step('a schema section renders its properties', async () => {
    const name = schemaNames.includes('CreateEvent') ? 'CreateEvent' : schemaNames[0];
    if (!name) throw new Error('the document has no schemas');
    const section = page.locator(`section.schema[data-schema="${name}"]`);
    const properties = Object.keys(openapi.components.schemas[name].properties || {});
    await section.scrollIntoViewIfNeeded();
    const shown = new Set(await section.locator(':scope > .schema-block > details > .schema-tree > li > .prop-line .prop-name').allInnerTexts());
    sameSet(`properties of schema ${name}`, shown, new Set(properties));
    await section.screenshot({ path: join(screenshotDir, '04-schema.png') });
  });

  await step('on a narrow screen the contents fold above the reference', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const toggle = nav.getByRole('button', { name: 'Contents' });
    await shows(toggle, 'the Contents button');
    if (await navOperations.first().isVisible()) throw new Error('the contents are not folded on a narrow screen');
    await toggle.click();
    await shows(navOperations, 'the contents after opening them');
    const navBox = await nav.boundingBox();
    const mainBox = await page.locator('main').boundingBox();
    if (!(navBox.y + navBox.height <= mainBox.y + 1)) throw new Error('the contents are not above the reference');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    if (overflow > 0) throw new Error(`the page is ${overflow} px wider than the screen`);
    await page.screenshot({ path: join(screenshotDir, '05-narrow.png') });
    await page.setViewportSize(viewport);
  });

  await step('a document that cannot be loaded is reported on the page', async () => {
    const failing = watch(await context.newPage(), 'docs (no document)', {
      // Chromium itself logs the failed request; that is the point of this step.
      expectedConsole: (message) => message.type() === 'error' && /status of 503/.test(message.text()),
    });
    try {
      await failing.route('**/openapi.json', (route) => route.fulfill({ status: 503, contentType: 'application/problem+json', body: '{}' }));
      await failing.goto(docsUrl);
      const alert = failing.getByRole('alert');
      await shows(alert, 'an error message');
      const text = await alert.innerText();
      if (!/could not be loaded/.test(text) || !/503/.test(text)) throw new Error(`the message says "${text}"`);
    } finally {
      await failing.close();
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
