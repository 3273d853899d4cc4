// The proxy's dashboard in headless Chromium against the real local stack (legacy
// simulator, identity service, migration proxy and synthetic clients, on free ports and
// a temp dir). Run by tests/dashboard/run.sh, which provides:
//   LOCAL_STACK_BIN, DASHBOARD_NODE_DIR (holds playwright-core), CHROMIUM_BIN,
//   DASHBOARD_SCREENSHOT.
//
// The planted mismatch: member 50's nickname is changed in the legacy's SQLite file with
// an `updated_at` far in the past. The identity service's sync only re-reads legacy rows
// changed within its look-back of the newest change it has seen, so it never copies
// this one: the legacy answers the planted nickname, the identity service the seeded
// one, and every shadowed `GET /api/v1/users/50` differs on `$.nickname`. (Members 1
// and 2 are not used: the synthetic clients read them in every batch lookup, which
// would turn one planted row into a steady mismatch rate and make the guard abort.)

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(path.join(process.env.DASHBOARD_NODE_DIR, 'package.json'));
const { chromium } = require('playwright-core');

const ADMIN_TOKEN = 'local-admin-token-not-for-production';
const PLANTED = 'planted-nickname';
const PLANTED_ID = 50;
const ROUTE = 'users-read';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a truthy value; fails with `what` after `ms`. */
async function until(what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

/** Starts local-stack on free ports in `dataDir`; resolves with its addresses. */
function startStack(dataDir) {
  const any = '127.0.0.1:0';
  const child = spawn(process.env.LOCAL_STACK_BIN, [
    '--data-dir', dataDir, '--percent', '5', '--bcrypt-cost', '4', '--seed-members', '100',
    '--legacy-addr', any, '--identity-http-addr', any, '--identity-grpc-addr', any,
    '--proxy-addr', any, '--admin-addr', any,
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`local-stack did not start:\n${out}\n${err}`)), 120000);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`local-stack exited (${code}):\n${out}\n${err}`)); });
    child.stdout.on('data', () => {
      if (!out.includes('synthetic clients are running')) return;
      clearTimeout(timer);
      const addr = (label) => out.match(new RegExp(`${label}\\s+http://([0-9.]+:[0-9]+)`))[1];
      resolve({ legacy: addr('legacy simulator'), proxy: addr('migration proxy'), admin: addr('admin API') });
    });
  });
  return { child, ready };
}

/** Stops local-stack as Ctrl-C does; kills it if it does not stop in time. */
async function stopStack(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
  await exited;
  clearTimeout(timer);
}

describe('the proxy dashboard in headless Chromium', { timeout: 180000 }, () => {
  let dataDir, profileDir, stack, addrs, context, page;
  const requests = [];
  const pageErrors = [];
  let consoleErrors = [];
  let navigations = 0;

  const admin = async (method, route, body) => {
    const r = await fetch(`http://${addrs.admin}${route}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.status, body: await r.json() };
  };
  const routeStatus = async () => (await admin('GET', '/admin/status')).body.routes.find((r) => r.name === ROUTE);
  const card = () => page.locator(`section.card[data-route="${ROUTE}"]`);

  before(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dashboard-stack-'));
    profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dashboard-chromium-'));
    stack = startStack(dataDir);
    addrs = await stack.ready;
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: process.env.CHROMIUM_BIN,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1440, height: 900 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('request', (r) => requests.push({ url: r.url(), auth: r.headers().authorization }));
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations += 1; });
  });

  after(async () => {
    await context?.close().catch(() => {});
    if (stack) await stopStack(stack.child);
    for (const dir of [dataDir, profileDir]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('is served without a token, holds no data, and carries its security headers', async () => {
    const r = await fetch(`http://${addrs.admin}/dashboard`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/html/);
    const csp = r.headers.get('content-security-policy');
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /connect-src 'self'/);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(r.headers.get('cache-control'), 'no-store');
    const html = await r.text();
    const nonce = csp.match(/'nonce-([0-9a-f]+)'/)[1];
    assert.ok(html.includes(`<script nonce="${nonce}">`));
    assert.ok(!html.includes(ADMIN_TOKEN));
  });

  it('loads, asks for the token, and says so when the token is refused', async () => {
    await page.goto(`http://${addrs.admin}/dashboard`);
    await page.locator('#token').waitFor({ state: 'visible' });
    assert.equal(await page.locator('section.card').count(), 0);
    await page.fill('#token', 'not-the-token');
    await page.click('#connect');
    const message = page.locator('#message');
    await message.waitFor({ state: 'visible' });
    await until('the 401 message', async () => /401/.test(await message.textContent()));
    assert.match(await message.textContent(), /token was refused/);
    await page.locator('#token').waitFor({ state: 'visible' });
    assert.equal(await page.locator('section.card').count(), 0);

    await page.fill('#token', ADMIN_TOKEN);
    await page.press('#token', 'Enter');
    consoleErrors = []; // the refused fetches above were logged as failed loads
    await card().waitFor({ state: 'visible', timeout: 10000 });
    // Every rule of the manifest in istio/: five member rules and `default`.
    assert.equal(await page.locator('section.card').count(), 6);
    assert.ok(await message.isHidden());
    await until('the live indicator', async () => (await page.locator('#live').getAttribute('data-state')) === 'live');
    assert.equal(await card().locator('.share-value').textContent(), '5%');
  });

  it('shows a planted mismatch on $.nickname, masked', async () => {
    // Enough comparisons in the guard's window first, so that a few planted mismatches
    // stay far below its 5% threshold and the route keeps running.
    await until('150 comparisons on users-read', async () => {
      const c = (await routeStatus()).figures.comparisons;
      return c.matches + c.noise + c.mismatches >= 150;
    }, 60000);
    const legacyDb = path.join(dataDir, 'legacy.sqlite3');
    execFileSync('sqlite3', ['-cmd', '.timeout 5000', legacyDb,
      `UPDATE users SET nickname = '${PLANTED}', updated_at = '2001-01-01 00:00:00.000000' WHERE id = ${PLANTED_ID}`]);
    // Four anonymous readers (keyed by their forwarded address): at 5% most of them
    // are served by the legacy and shadowed to the identity service.
    for (let i = 1; i <= 4; i++) {
      const r = await fetch(`http://${addrs.proxy}/api/v1/users/${PLANTED_ID}`, {
        headers: { 'x-forwarded-for': `198.51.100.${i}` },
      });
      assert.equal(r.status, 200);
      await r.arrayBuffer();
    }
    const fields = card().locator('ol.fields .field');
    await until('$.nickname among the differing fields', async () => (await fields.allTextContents()).includes('$.nickname'));
    const diffs = card().locator('.samples pre.diff');
    await until('a masked $.nickname sample', async () => (await diffs.allTextContents()).some((t) => t.includes('$.nickname')));
    const lines = (await diffs.allTextContents()).join('\n').split('\n').filter((l) => l.includes('$.nickname'));
    for (const line of lines) assert.match(line, /^~ \$\.nickname: string\(\d+\) != string\(\d+\)$/);
    assert.ok(lines.includes(`~ $.nickname: string(${PLANTED.length}) != string(${`member${PLANTED_ID}`.length})`), lines.join('\n'));
    const rate = await card().locator('.mismatch-rate').textContent();
    assert.match(rate, /^[0-9.]+%$/);
    assert.notEqual(rate, '0%');
    // Neither value appears anywhere in the page, nor the token.
    const html = await page.content();
    const text = await page.locator('body').innerText();
    for (const secret of [PLANTED, `member${PLANTED_ID}`, ADMIN_TOKEN]) {
      assert.ok(!html.includes(secret) && !text.includes(secret), `the page shows ${secret}`);
    }
  });

  it('follows a weight change without a reload', async () => {
    await page.evaluate(() => { window.__sameDocument = 'yes'; });
    const before = navigations;
    const r = await admin('PUT', `/admin/routes/${ROUTE}/weight`, { percent: 42 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const share = card().locator('.share-value');
    await until('42% on the users-read card', async () => (await share.textContent()) === '42%', 10000);
    assert.ok(await card().locator('.pill.override').isVisible());
    assert.match(await card().locator('.share-sub').textContent(), /manifest says 5%/);
    // The chart drew the change (the proxy's share history: start at 5, then 42).
    await until('the chart mark of the change', async () => (await card().locator('svg.share-chart circle.mark.admin_weight').count()) === 1, 5000);
    assert.match(await card().locator('svg.share-chart').getAttribute('aria-label'), /now 42%/);
    // The other routes did not move.
    assert.equal(await page.locator('section.card[data-route="sessions"] .share-value').textContent(), '5%');
    assert.equal(await page.evaluate(() => window.__sameDocument), 'yes');
    assert.equal(navigations, before);
    await sleep(1500); // a second rate point, for the screenshot
    await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT, fullPage: true });
  });

  it('shows the decommission report the autopilot publishes, its text as text', async () => {
    assert.equal(await page.locator('#report').isVisible(), false);
    const figures = (compared, mismatches) => ({ reads: { compared, mismatches }, write_effects: { compared: 0, mismatches: 0 },
      agreement: (compared - mismatches) / compared, agreement_lower_95: 0.99 });
    const report = {
      generated_at: '2026-12-04T21:00:00.000Z', generated_at_micros: 0, target: 0.99999, passed: false,
      why_not: ['users-me: at 0%, not every step of the plan passed on evidence since its last abort'],
      routes: [
        { route: 'users-read', percent: 100, passed: true, steps: [{ percent: 50, outcome: 'completed', secs: 600, figures: figures(5000, 0) }], aborts: [], totals: figures(5000, 0) },
        { route: 'users-me', percent: 0, passed: false, steps: [], totals: figures(800, 1),
          aborts: [{ at: '2026-12-04T20:59:00.000Z', percent: 50, reason: '<img src=x onerror=alert(1)> effect:nickname' }] },
      ],
    };
    const r = await fetch(`http://${addrs.admin}/admin/report`, {
      method: 'PUT', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(report),
    });
    assert.equal(r.status, 200);
    const box = page.locator('#report');
    await until('the report on the page', async () => box.isVisible(), 10000);
    assert.match(await box.locator('h2').textContent(), /NOT PASSED/);
    const text = await box.textContent();
    assert.match(text, /users-read.*100%.*5000.*100\.0000%/s);
    assert.match(text, /users-me aborted at 50%: <img src=x onerror=alert\(1\)> effect:nickname/);
    assert.equal(await box.locator('img').count(), 0);
  });

  it('kept the token out of URLs, sent it only as the bearer, and broke no rule of its CSP', () => {
    assert.ok(requests.length > 10);
    for (const { url, auth } of requests) {
      if (!url.startsWith('http')) continue; // the page's empty data: favicon
      assert.ok(!url.includes(ADMIN_TOKEN) && !url.includes('not-the-token'), url);
      const { pathname } = new URL(url);
      if (pathname.startsWith('/admin/')) assert.match(auth ?? '', /^Bearer /, url);
      assert.equal(new URL(url).host, addrs.admin, `a request outside the admin port: ${url}`);
    }
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(consoleErrors, []);
  });
});
