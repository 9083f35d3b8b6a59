// The live dashboard in a real browser: Debian's Chromium, driven by playwright-core.
//
// Run by tests/api/dashboard.rs against an oms it started, with:
//   OMS_URL             e.g. http://127.0.0.1:PORT
//   OMS_STAFF_TOKEN     signs in to the dashboard
//   OMS_CUSTOMER_TOKEN  places the order through the API
//   OMS_SKU             an item in stock whose quantity is above its low-stock threshold
//   CHROMIUM            (optional) the browser, /usr/bin/chromium by default
//   OMS_SCREENSHOT      (optional) a .png path: screenshots of the staff page on success
//   OMS_STEP_TIMEOUT_MS (optional) how long each step may wait, 30000 by default
//
// A staff page signs in and waits for the live connection; an order placed from here (not from
// the page) must show up: PENDING then CONFIRMED in the feed and in the counts, and the item at
// its low-stock threshold in the low-stock panel. The page's buttons advance and cancel it, and
// the stock comes back. Then a customer page signs in (own orders only; live stock FORBIDDEN,
// shown in its panel); the staff page's socket is dropped and must reconnect, and its order
// stream ends as if it fell behind and must be subscribed again; a second order shows up on both
// pages, a refused request shows its userErrors in the row, and the customer cancels the order
// from the page; a forged token is refused at sign-in. Exits non-zero with the failed step on failure, leaving screenshots in
// target/dashboard-failure*.png.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOT = path.resolve(here, '../../target/dashboard-failure.png');
const STEP_TIMEOUT = Number(process.env.OMS_STEP_TIMEOUT_MS || 30000);
const started = Date.now();

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`dashboard test: the environment variable ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const baseUrl = need('OMS_URL').replace(/\/$/, '');
const staffToken = need('OMS_STAFF_TOKEN');
const customerToken = need('OMS_CUSTOMER_TOKEN');
// The customer's id and the name their token claims.
const CUSTOMER_ID = need('OMS_CUSTOMER_ID');
const CUSTOMER_NAME = need('OMS_CUSTOMER_NAME');
const sku = need('OMS_SKU');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const log = (message) => console.log(`[dashboard ${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);

let step = 'starting';
async function expectStep(name, action) {
  step = name;
  log(name);
  return action();
}

async function api(token, query, variables) {
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (response.status !== 200 || body.errors) {
    throw new Error(`API ${response.status}: ${JSON.stringify(body)}`);
  }
  return body.data;
}

const byTestId = (id) => `[data-testid="${id}"]`;
// The item's price in minor units (tests/api/dashboard.rs sets it).
const UNIT_PRICE = Number(process.env.OMS_UNIT_PRICE || 1250);
const feedRow = (orderId, to) => `[data-testid="feed-row"][data-order-id="${orderId}"][data-to="${to}"]`;

async function countOf(page, status) {
  return Number((await page.textContent(byTestId(`count-${status}`))).replace(/\D/g, ''));
}

async function waitForCount(page, status, expected) {
  await page.waitForFunction(
    ([selector, value]) => {
      const node = document.querySelector(selector);
      return node && Number(node.textContent.replace(/\D/g, '')) === value;
    },
    [byTestId(`count-${status}`), expected],
    { timeout: STEP_TIMEOUT },
  );
}

async function lowStockRow(page) {
  return page.$(`[data-testid="low-stock-row"][data-sku="${sku}"]`);
}

function watch(target, name) {
  target.on('pageerror', (error) => pageErrors.push(`${name}: ${error}`));
  target.on('console', (message) => {
    if (message.type() === 'error') log(`${name} console error: ${message.text()}`);
  });
}

/** Opens the dashboard and signs in; resolves once it is live and has read orders and stock. */
async function signIn(target, token) {
  const response = await target.goto(`${baseUrl}/dashboard`);
  if (!response || response.status() !== 200) throw new Error(`GET /dashboard answered ${response && response.status()}`);
  await target.fill('#token', token);
  await target.click(byTestId('sign-in'));
  await target.waitForSelector(`${byTestId('connection-state')}[data-state="connected"]`);
  await target.waitForSelector(`${byTestId('counts')}[data-loaded="true"]`, { state: 'attached' });
  await target.waitForSelector(`${byTestId('low-stock')}[data-loaded="true"]`, { state: 'attached' });
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
let page;
let customerPage;
const pageErrors = [];
let failed = false;
try {
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_TIMEOUT);
  page = await context.newPage();
  watch(page, 'staff page');

  await expectStep('open /dashboard and sign in as staff', () => signIn(page, staffToken));

  const inventoryLive = await page.getAttribute(byTestId('inventory-live'), 'data-state');
  if (inventoryLive !== 'live') {
    throw new Error(`the low-stock panel is not live (${inventoryLive}): ${await page.textContent(byTestId('inventory-error'))}`);
  }

  const before = {};
  for (const status of ['PENDING', 'CONFIRMED', 'RECEIVED', 'CANCELLED']) before[status] = await countOf(page, status);
  log(`counts before: ${JSON.stringify(before)}`);
  const earlierCancelled = Number(process.env.OMS_EARLIER_CANCELLED || 0);
  if (before.CANCELLED !== earlierCancelled) {
    throw new Error(`CANCELLED shows ${before.CANCELLED}, not the ${earlierCancelled} orders cancelled before the page opened`);
  }

  const { inventoryItem: item } = await api(staffToken,
    'query($sku: String!) { inventoryItem(sku: $sku) { quantity lowStockThreshold lowStock } }', { sku });
  if (!item) throw new Error(`no inventory item ${sku}: the Rust test stocks it`);
  const quantity = item.quantity - item.lowStockThreshold;
  if (quantity < 1 || item.lowStock) throw new Error(`${sku} must be stocked above its threshold: ${JSON.stringify(item)}`);
  if (await lowStockRow(page)) throw new Error(`${sku} is in the low-stock panel before any order`);

  // Record every value the PENDING and CONFIRMED counters take, however briefly.
  await page.evaluate(() => {
    window.__seenCounts = { PENDING: [], CONFIRMED: [] };
    for (const status of Object.keys(window.__seenCounts)) {
      const node = document.querySelector(`[data-testid="count-${status}"]`);
      new MutationObserver(() => window.__seenCounts[status].push(Number(node.textContent.replace(/\D/g, ''))))
        .observe(node, { childList: true, characterData: true, subtree: true });
    }
  });

  const orderId = await expectStep(`place an order of ${quantity} × ${sku} through the API as a customer`, async () => {
    const data = await api(customerToken,
      `mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
         order { id status } userErrors { code message } } }`,
      { input: { items: [{ sku, quantity }] } });
    const { order, userErrors } = data.placeOrder;
    if (userErrors.length) throw new Error(`placeOrder: ${JSON.stringify(userErrors)}`);
    log(`order ${order.id} is ${order.status}`);
    return order.id;
  });

  await expectStep('the feed shows the order placed (PENDING), then CONFIRMED', async () => {
    await page.waitForSelector(feedRow(orderId, 'PENDING'), { state: 'attached' });
    await page.waitForSelector(feedRow(orderId, 'CONFIRMED'));
    const order = await page.$$eval(`[data-testid="feed-row"][data-order-id="${orderId}"]`,
      (rows) => rows.map((row) => row.dataset.to));
    if (order.join(',') !== 'CONFIRMED,PENDING') throw new Error(`feed rows of the order, newest first: ${order}`);
  });

  await expectStep('the counts went PENDING +1, then CONFIRMED +1 and PENDING back', async () => {
    await waitForCount(page, 'CONFIRMED', before.CONFIRMED + 1);
    await waitForCount(page, 'PENDING', before.PENDING);
    const seen = await page.evaluate(() => window.__seenCounts);
    if (!seen.PENDING.includes(before.PENDING + 1)) {
      throw new Error(`PENDING never showed ${before.PENDING + 1}; it showed ${JSON.stringify(seen.PENDING)}`);
    }
  });

  await expectStep(`the low-stock panel shows ${sku} at its threshold (${item.lowStockThreshold})`, async () => {
    await page.waitForSelector(`[data-testid="low-stock-row"][data-sku="${sku}"][data-quantity="${item.lowStockThreshold}"]`);
    if (process.env.OMS_SCREENSHOT) await page.screenshot({ path: process.env.OMS_SCREENSHOT.replace(/\.png$/, '-low-stock.png') });
  });

  await expectStep('clicking the order shows its customer by name, its lines at their prices and its total', async () => {
    await page.click(`${feedRow(orderId, 'CONFIRMED')} [data-testid="open-order"]`);
    await page.waitForSelector(`${byTestId('order-panel')}[data-loaded="${orderId}"]`);
    const line = await page.textContent(`[data-testid="order-line"][data-sku="${sku}"]`);
    const total = await page.textContent(byTestId('order-total'));
    const customer = await page.textContent('#order-customer');
    if (customer !== `${CUSTOMER_NAME} (${CUSTOMER_ID})`) throw new Error(`order panel: customer "${customer}"`);
    const expected = (quantity * UNIT_PRICE / 100).toFixed(2);
    if (!line.includes(String(quantity)) || !total.includes(expected)) {
      throw new Error(`order panel: line "${line}", total "${total}" (expected ${quantity} × ${UNIT_PRICE / 100} = ${expected})`);
    }
  });

  await expectStep('the status filter shows only changes to the chosen status, then all again', async () => {
    await page.selectOption(byTestId('feed-filter'), 'PENDING');
    const shown = await page.$$eval('[data-testid="feed-row"]', (rows) => rows.filter((row) => !row.hidden).map((row) => row.dataset.to));
    if (shown.length === 0 || shown.some((to) => to !== 'PENDING')) throw new Error(`rows shown with PENDING chosen: ${shown}`);
    await page.selectOption(byTestId('feed-filter'), '');
    const all = await page.$$eval('[data-testid="feed-row"]', (rows) => rows.filter((row) => row.hidden).length);
    if (all !== 0) throw new Error(`${all} rows still hidden with every status chosen`);
  });

  await expectStep('an order searched by a made-up id says it cannot be found', async () => {
    await page.fill(byTestId('order-search-id'), '01a22b3a-0000-7000-8000-000000000000');
    await page.press(byTestId('order-search-id'), 'Enter');
    await page.waitForFunction(() => document.querySelector('[data-testid="order-error"]').textContent.includes('no such order'));
  });

  await expectStep('advance the order with the page (CONFIRMED → RECEIVED)', async () => {
    await page.click(`${feedRow(orderId, 'CONFIRMED')} [data-action="advance"][data-to="RECEIVED"]`);
    await page.waitForSelector(feedRow(orderId, 'RECEIVED'));
    await waitForCount(page, 'RECEIVED', before.RECEIVED + 1);
    await waitForCount(page, 'CONFIRMED', before.CONFIRMED);
  });

  await expectStep('cancel the order with the page (RECEIVED → CANCELLED)', async () => {
    await page.click(`${feedRow(orderId, 'RECEIVED')} [data-action="cancel"]`);
    await page.waitForSelector(feedRow(orderId, 'CANCELLED'));
    await waitForCount(page, 'CANCELLED', before.CANCELLED + 1);
    await waitForCount(page, 'RECEIVED', before.RECEIVED);
    const actions = await page.$$(`${feedRow(orderId, 'CANCELLED')} [data-action]`);
    if (actions.length) throw new Error('a cancelled order still offers actions');
  });

  await expectStep(`the stock comes back: ${sku} leaves the low-stock panel`, async () => {
    await page.waitForSelector(`[data-testid="low-stock-row"][data-sku="${sku}"]`, { state: 'detached' });
  });

  const errors = await page.$$eval('[data-testid="action-error"]', (nodes) => nodes.map((n) => n.textContent).filter(Boolean));
  if (errors.length) throw new Error(`the page shows action errors: ${errors.join(' | ')}`);

  customerPage = await expectStep('a customer signs in: own orders only, no live stock (FORBIDDEN)', async () => {
    const customerContext = await browser.newContext();
    customerContext.setDefaultTimeout(STEP_TIMEOUT);
    const other = await customerContext.newPage();
    watch(other, 'customer page');
    await signIn(other, customerToken);
    await other.waitForSelector(`${byTestId('inventory-live')}[data-state="error"]`);
    const message = await other.textContent(byTestId('inventory-error'));
    if (!message.includes('FORBIDDEN')) throw new Error(`the stock panel says ${JSON.stringify(message)}`);
    await waitForCount(other, 'CANCELLED', 1);
    return other;
  });

  // From here on the staff page's WebSocket goes through a proxy of the test's, so the test can
  // add messages of its own to what the server sends.
  let proxied = null;
  const sentByPage = [];
  await page.routeWebSocket(/\/graphql\/ws$/, (socket) => {
    const server = socket.connectToServer();
    socket.onMessage((message) => {
      sentByPage.push(String(message));
      server.send(message);
    });
    proxied = socket;
  });
  const subscribesOf = (id) => sentByPage
    .map((text) => { try { return JSON.parse(text); } catch (_) { return {}; } })
    .filter((message) => message.type === 'subscribe' && message.id === id).length;

  await expectStep('the staff page loses its connection, reconnects and reloads', async () => {
    // As if the network dropped: the page's own client sees an abnormal close and retries.
    await page.evaluate(() => app.client.socket.close(4000, 'dropped by the browser test'));
    await page.waitForSelector(`${byTestId('connection-state')}[data-state="reconnecting"]`, { state: 'attached' });
    await page.waitForSelector(`${byTestId('connection-state')}[data-state="connected"]`);
    await page.waitForSelector(`${byTestId('counts-state')}[data-state="live"]`, { state: 'attached' });
    await waitForCount(page, 'CANCELLED', before.CANCELLED + 1);
    if (!proxied) throw new Error('the page reconnected without going through the proxy');
  });

  await expectStep('the order stream ends as if it fell behind: the page subscribes again', async () => {
    const subscribed = subscribesOf('orders');
    if (subscribed !== 1) throw new Error(`the page subscribed to orders ${subscribed} times on reconnecting`);
    proxied.send(JSON.stringify({ id: 'orders', type: 'next', payload: { errors: [
      { message: 'the subscriber fell behind (test)', extensions: { code: 'SUBSCRIPTION_LAGGED' } }] } }));
    proxied.send(JSON.stringify({ id: 'orders', type: 'complete' }));
    await page.waitForSelector(`${byTestId('feed-state')}[data-state="reconnecting"]`, { state: 'attached' });
    await page.waitForSelector(`${byTestId('feed-state')}[data-state="live"]`, { state: 'attached' });
    await page.waitForSelector(`${byTestId('counts-state')}[data-state="live"]`, { state: 'attached' });
    if (subscribesOf('orders') !== 2) throw new Error('the page did not subscribe to orders again');
    if (subscribesOf('inventory') !== 1) throw new Error('the page subscribed to inventory again, which had not ended');
  });

  const secondId = await expectStep('the customer places a second order; both pages show it', async () => {
    const data = await api(customerToken,
      'mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { order { id } userErrors { code message } } }',
      { input: { items: [{ sku, quantity: 1 }] } });
    if (data.placeOrder.userErrors.length) throw new Error(`placeOrder: ${JSON.stringify(data.placeOrder.userErrors)}`);
    const id = data.placeOrder.order.id;
    await page.waitForSelector(feedRow(id, 'CONFIRMED'));
    await customerPage.waitForSelector(feedRow(id, 'CONFIRMED'));
    if (await customerPage.$(`${feedRow(id, 'CONFIRMED')} [data-action="advance"]`)) {
      throw new Error('a customer is offered to advance an order');
    }
    return id;
  });

  await expectStep('a refused request shows its userErrors in the row', async () => {
    const refusal = async (route) => {
      if (!(route.request().postData() || '').includes('updateOrderStatus')) return route.continue();
      return route.fulfill({
        contentType: 'application/json',
        body: JSON.stringify({ data: { updateOrderStatus: { accepted: false, userErrors: [
          { field: ['status'], code: 'INVALID_TRANSITION', message: 'an order that is <b>X</b> cannot become Y' }] } } }),
      });
    };
    await customerPage.route(`${baseUrl}/graphql`, refusal);
    await customerPage.click(`${feedRow(secondId, 'CONFIRMED')} [data-action="cancel"]`);
    const row = feedRow(secondId, 'CONFIRMED');
    await customerPage.waitForFunction(
      (selector) => document.querySelector(selector)?.textContent.includes('INVALID_TRANSITION: an order that is <b>X</b>'),
      `${row} [data-testid="action-error"]`, { timeout: STEP_TIMEOUT });
    await customerPage.unroute(`${baseUrl}/graphql`, refusal);
    await customerPage.waitForSelector(`${row} [data-action="cancel"]`);
  });

  await expectStep('the customer cancels it from the page; staff sees it live', async () => {
    await customerPage.click(`${feedRow(secondId, 'CONFIRMED')} [data-action="cancel"]`);
    await customerPage.waitForSelector(feedRow(secondId, 'CANCELLED'));
    await page.waitForSelector(feedRow(secondId, 'CANCELLED'));
    await waitForCount(page, 'CANCELLED', before.CANCELLED + 2);
    await waitForCount(customerPage, 'CANCELLED', 2);
    const rowError = await customerPage.textContent(`${feedRow(secondId, 'CANCELLED')} [data-testid="action-error"]`);
    if (rowError) throw new Error(`the cancelled row shows an error: ${rowError}`);
  });

  await expectStep('a forged token is refused and the sign-in form says so', async () => {
    const forged = staffToken.slice(0, -4) + (staffToken.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    const other = await customerPage.context().newPage();
    watch(other, 'forged-token page');
    await other.goto(`${baseUrl}/dashboard`);
    await other.fill('#token', forged);
    await other.click(byTestId('sign-in'));
    await other.waitForFunction((selector) => /refused/.test(document.querySelector(selector).textContent),
      byTestId('sign-in-error'), { timeout: STEP_TIMEOUT });
    const stored = await other.evaluate(() => sessionStorage.getItem('oms.dashboard.token'));
    if (stored) throw new Error('a refused token stays in sessionStorage');
    await other.close();
  });

  if (process.env.OMS_SCREENSHOT) {
    await page.screenshot({ path: process.env.OMS_SCREENSHOT, fullPage: true });
    log(`screenshot of the staff page: ${process.env.OMS_SCREENSHOT}`);
  }
  if (pageErrors.length) throw new Error(`the page threw: ${pageErrors.join(' | ')}`);
  log('passed');
} catch (error) {
  failed = true;
  console.error(`dashboard test FAILED at step "${step}": ${error && error.message ? error.message : error}`);
  if (pageErrors.length) console.error(`page errors: ${pageErrors.join(' | ')}`);
  for (const [target, file] of [[page, SCREENSHOT], [customerPage, SCREENSHOT.replace(/\.png$/, '-customer.png')]]) {
    if (!target) continue;
    try {
      mkdirSync(path.dirname(file), { recursive: true });
      await target.screenshot({ path: file, fullPage: true });
      console.error(`screenshot: ${file}`);
      const state = await target.evaluate(() => ({
        connection: document.querySelector('[data-testid="connection-state"]')?.textContent,
        detail: document.querySelector('[data-testid="connection-detail"]')?.textContent,
        errors: [...document.querySelectorAll('.error-text')].map((n) => n.textContent).filter(Boolean),
      }));
      console.error(`page state: ${JSON.stringify(state)}`);
    } catch (screenshotError) {
      console.error(`(no screenshot: ${screenshotError.message})`);
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
