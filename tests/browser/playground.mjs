// The GraphiQL playground at / in a real browser with every other host unreachable (Chromium
// resolves no name but 127.0.0.1, and any request to another host fails the test): the page
// renders, the documentation explorer shows the schema (introspection), a query runs, and a
// subscription receives an event. Run by tests/api/playground.rs with:
//   OMS_URL             e.g. http://127.0.0.1:PORT
//   OMS_STAFF_TOKEN     put in the Headers tab
//   OMS_CUSTOMER_TOKEN  places the order the subscription must see
//   OMS_SKU             an item in stock
//   CHROMIUM            (optional) the browser, /usr/bin/chromium by default
// Exits non-zero with the failed step, leaving target/playground-failure.png.

import { chromium } from 'playwright-core';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOT = path.resolve(here, '../../target/playground-failure.png');
const STEP_TIMEOUT = Number(process.env.OMS_STEP_TIMEOUT_MS || 30000);
const started = Date.now();
const env = (name) => {
  if (!process.env[name]) { console.error(`playground test: ${name} is not set`); process.exit(2); }
  return process.env[name];
};
const baseUrl = env('OMS_URL').replace(/\/$/, '');
const staffToken = env('OMS_STAFF_TOKEN');
const customerToken = env('OMS_CUSTOMER_TOKEN');
const sku = env('OMS_SKU');
const log = (message) => console.log(`[playground ${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);

let step = 'starting';
async function expectStep(name, action) {
  step = name;
  log(name);
  return action();
}

/** Sets the text of the CodeMirror editor inside `selector` (GraphiQL 3 uses CodeMirror 5). */
async function setEditor(page, selector, text) {
  await page.waitForSelector(`${selector} .CodeMirror`, { state: 'attached' });
  await page.evaluate(([sel, value]) => document.querySelector(`${sel} .CodeMirror`).CodeMirror.setValue(value), [selector, text]);
}

/** Runs the document in the query editor, as a person does with Ctrl-Enter. */
async function run(page) {
  await page.click('.graphiql-query-editor .CodeMirror');
  await page.keyboard.press('Control+Enter');
}

async function resultText(page) {
  return page.evaluate(() => document.querySelector('.result-window .CodeMirror').CodeMirror.getValue());
}

async function waitForResult(page, predicate, what, timeout = STEP_TIMEOUT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const text = await resultText(page);
    if (predicate(text)) return text;
    if (Date.now() > deadline) throw new Error(`the result never showed ${what}; it shows: ${text.slice(0, 1500).replace(/\s+/g, " ")}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // No host but this machine resolves: a page that needs the internet cannot render.
    '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
  ],
});
let page;
const problems = [];
let failed = false;
try {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_TIMEOUT);
  page = await context.newPage();
  const ownHost = new URL(baseUrl).host;
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.protocol !== 'data:' && url.host !== ownHost) problems.push(`a request to another host: ${request.url()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error}`));
  page.on('console', (message) => { if (message.type() === 'error') problems.push(`console error: ${message.text()}`); });

  await expectStep('open / and see GraphiQL render', async () => {
    // A link may carry the document to open (?query=): here an anonymous query.
    const query = `{ inventoryItem(sku: "${sku}") { sku quantity } }`;
    const response = await page.goto(`${baseUrl}/?query=${encodeURIComponent(query)}`);
    if (!response || response.status() !== 200) throw new Error(`GET / answered ${response && response.status()}`);
    await page.waitForSelector('.graphiql-container');
    await page.waitForSelector('.graphiql-execute-button');
  });

  await expectStep('put a staff token in the Headers tab', () =>
    setEditor(page, '.graphiql-editor-tool .graphiql-editor:not(.hidden)', JSON.stringify({ Authorization: `Bearer ${staffToken}` })));

  await expectStep('the documentation explorer shows the schema', async () => {
    await page.click('button[aria-label$="Documentation Explorer"]');
    await page.waitForSelector('.graphiql-doc-explorer');
    // Types only the server's introspection answer can name.
    await page.waitForSelector('.graphiql-doc-explorer >> text=OrderStatusCount');
    await page.waitForSelector('.graphiql-doc-explorer >> text=InventoryItemFilter');
  });

  await expectStep(`a query runs: inventoryItem(sku: "${sku}")`, async () => {
    await run(page);
    await waitForResult(page, (text) => text.includes(`"sku": "${sku}"`), `the item ${sku}`);
  });

  await expectStep('a subscription receives an order placed meanwhile', async () => {
    await setEditor(page, '.graphiql-query-editor', 'subscription { orderStatusChanged { orderId to } }');
    await run(page);
    // The subscription is registered once the server acknowledges it: place orders until one
    // is seen (the first may be placed before the socket is open).
    const deadline = Date.now() + STEP_TIMEOUT;
    for (;;) {
      const response = await fetch(`${baseUrl}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${customerToken}` },
        body: JSON.stringify({ query: `mutation { placeOrder(input: {items: [{sku: "${sku}", quantity: 1}]}) { order { id } } }` }),
      });
      const id = (await response.json()).data.placeOrder.order.id;
      try {
        await waitForResult(page, (text) => text.includes(id), `order ${id}`, 3000);
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
      }
    }
  });

  if (problems.length) throw new Error(problems.join('\n'));
  log('passed');
} catch (error) {
  failed = true;
  console.error(`playground test FAILED at step "${step}": ${error.message}`);
  if (problems.length) console.error(problems.join('\n'));
  if (page) await page.screenshot({ path: SCREENSHOT }).catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
