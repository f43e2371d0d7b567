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
//   pause_resume         a campaign of every customer at 20/s (the form's rate limit) paused
//                        while it sends and resumed with the buttons; only the legal buttons
//                        show in each state; it completes
//   dead_letter          a dead letter on the ai queue (no minicrm-ai runs) requeued from the
//                        Queues page after the confirmation; it is back in the ai queue's ready
//   suppressions         an address suppressed through the page (admin), a second time (the
//                        first suppression stays), filtered by reason, removed after the
//                        confirmation; each step checked in GET /api/suppressions as well
//   webhooks             an endpoint created through the page: its signing secret shown once
//                        (not in the list, not after a reload, not in GET /api/webhooks); its
//                        test event sent (the job is on the webhooks queue: no minicrm-webhooks
//                        runs here); deleted after the confirmation, gone from the API
//   reschedule           a scheduled campaign from the form; Reschedule on its page moves
//                        send_at (GET /api/campaigns/:id agrees); Cancel ends it
//   history_chart        a page opened after a campaign ran draws messages per second at once
//                        (the stream's history event), before any live figure
//
// pause_resume also waits for the receipt events (web_env turns the vendor's on) and checks the
// page's bounced / opened / clicked against GET /api/campaigns/:id before the README's pictures.
//
// Screenshots of every page go to the artefacts directory (dashboard-*.png); overview.png and
// campaign.png (taken at the end of pause_resume) are the README's pictures (docs/).
//
// Run by web_env through run_browser_test.sh (README.md here): MINICRM_WEB_BASE, the admin key,
// the artefacts directory, and REDIS_URL / MINICRM_REDIS_PREFIX of the private Redis (the
// dead-letter case writes its fixture there with redis-cli, in lib/queue's dead-letter format).
// The pause case limits its campaign to 20 messages per second (rate_per_s from the form), so
// it sends for seconds: long enough to press Pause.

import { keys, artifacts, watch, expectNoProblems, signIn, screenshot, runCases, pageFetch } from './lib/browser.mjs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const KEY = keys.admin;
const PAGES = [
  ['/', 'Overview'], ['/campaigns/new', 'New campaign'], ['/customers', 'Customers'],
  ['/orders', 'Orders'], ['/queues', 'Queues'], ['/suppressions', 'Suppressions'],
  ['/webhooks', 'Webhooks'], ['/keys', 'API keys'], ['/users', 'Users'],
];

function check(cond, msg) { if (!cond) throw new Error(msg); }

// The README's pictures: what the window shows (1280 x 860), not the whole page.
async function readmeShot(page, name) {
  await page.screenshot({ path: path.join(artifacts, name + '.png') });
}

// Before signing in, the page asks /auth/me and gets the contract's 401.
const SIGNED_OUT = [/\/auth\/me$/];
// Suppressions and webhooks come from other branches: until they are merged the API answers
// 404 and the page must show its notice (checked below) instead of an error.
const NOT_YET = [/\/api\/suppressions(\?|$)/, /\/api\/webhooks$/];

// lib/browser.mjs's check (then the list is emptied for the next step), where the answers
// `allow` expects do not count: neither the HTTP error itself nor Chromium's console line about
// it ("Failed to load resource: ... 401 (<url>)").
function expectClean(problems, allow, what) {
  const url = (p) => (p.match(/^HTTP \d+: \S+ (\S+)$/) || p.match(/^console error: Failed to load resource.*\(([^()]*)\)$/) || [])[1];
  const real = problems.filter((p) => !(url(p) && allow.some((re) => re.test(url(p)))));
  problems.length = 0;
  expectNoProblems(real, what);
}

async function signInWithForm(page) {
  await page.goto('/');
  await page.getByLabel('API key', { exact: true }).fill(KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
}

// Signed in through the harness's POST /auth/key (the form is sign_in's case), once the
// sign-in page has finished its own reads (a navigation would abort them).
async function signInFast(page) {
  await page.goto('/');
  await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
  await signIn(page, 'admin');
  await page.goto('/');
  await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
}

async function go(page, route, title) {
  await page.goto('/#' + route);
  await page.getByRole('heading', { level: 1, name: title }).waitFor();
}

// Poll fn() until it is true, or fail with msg after ms.
async function until(fn, msg, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(msg);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const num = (t) => Number(String(t).trim().replace(/,/g, ''));

// ---- cases -------------------------------------------------------------------------------

await runCases([
  ['sign_in', async (page, context) => {
    const problems = watch(page, [...SIGNED_OUT, /\/auth\/key$/]);
    await page.goto('/');
    await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
    await screenshot(page, 'dashboard-signin');
    // A wrong key is refused on the page, and the field is emptied.
    await page.getByLabel('API key', { exact: true }).fill('mck_not_a_key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
    check(await page.getByLabel('API key', { exact: true }).inputValue() === '', 'the key field is not cleared');
    await page.getByLabel('API key', { exact: true }).fill(KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    const visible = await page.evaluate(() => JSON.stringify({ l: { ...localStorage }, s: { ...sessionStorage }, c: document.cookie }));
    check(!visible.includes(KEY) && !visible.includes('mck_'), 'the key is kept in the page: ' + visible);
    const cookies = await context.cookies();
    check(cookies.some((c) => c.name === 'sid' && c.httpOnly), 'no HttpOnly session cookie after signing in');
    check(!cookies.some((c) => c.value.includes(KEY)), 'the key is in a cookie');
    // Sign out ends the session: the sign-in page again.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor();
    expectClean(problems, [...SIGNED_OUT, /\/auth\/key$/], 'signing in and out');
  }],

  ['every_page', async (page) => {
    const problems = watch(page, SIGNED_OUT);
    await signInFast(page);
    for (const [route, title] of PAGES) {
      await go(page, route, title);
      await page.waitForTimeout(1500); // let the page's reads and a tick of live updates land
      const notice = await page.locator('.notice').count();
      expectClean(problems, notice ? [...SIGNED_OUT, ...NOT_YET] : SIGNED_OUT, `page ${route}`);
      const errors = await page.locator('.error').allTextContents();
      check(!errors.length, `${route}: shows an error: ${errors.join('; ')}`);
      await screenshot(page, 'dashboard-page-' + (route.replace(/[^a-z]+/g, '-').replace(/^-|-$/g, '') || 'overview'));
    }
  }],

  ['labels_and_keyboard', async (page) => {
    const problems = watch(page, [...SIGNED_OUT, ...NOT_YET]);
    await signInFast(page);
    for (const [route, title] of PAGES) {
      await go(page, route, title);
      await page.waitForTimeout(500);
      const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
        .filter((el) => el.type !== 'hidden')
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
        .map((el) => el.outerHTML.slice(0, 120)));
      check(!unlabelled.length, `${route}: inputs without a label: ${unlabelled.join(' | ')}`);
      const nameless = await page.evaluate(() => [...document.querySelectorAll('button, a[href]')]
        .filter((el) => !(el.textContent.trim() || el.getAttribute('aria-label')))
        .map((el) => el.outerHTML.slice(0, 120)));
      check(!nameless.length, `${route}: buttons or links without a name: ${nameless.join(' | ')}`);
    }
    // From the top of the New campaign page: the skip link first, then Tab reaches the
    // navigation, every field of the form and its submit button, in that order.
    await go(page, '/campaigns/new', 'New campaign');
    const first = await page.evaluate(() => {
      const f = [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')].find((el) => el.tabIndex >= 0);
      return f && f.textContent.trim();
    });
    check(first === 'Skip to content', `the first focusable element is "${first}", not the skip link`);
    await page.locator('a.skip').focus();
    check(await page.locator('a.skip').isVisible(), 'the focused skip link is not visible');
    const seen = [];
    for (let i = 0; i < 60 && seen[seen.length - 1] !== 'Create campaign'; i++) {
      await page.keyboard.press('Tab');
      seen.push(await page.evaluate(() => {
        const el = document.activeElement;
        return (el.labels && el.labels[0] && el.labels[0].textContent.trim()) || el.getAttribute('aria-label') || el.textContent.trim();
      }));
    }
    const order = ['Overview', 'Queues', 'Sign out', 'Name', 'Minimum total spend', 'Email domain', 'Message template', 'Rate limit (messages per second)', 'Create campaign'];
    let at = -1;
    for (const want of order) {
      const i = seen.indexOf(want, at + 1);
      check(i > at, `Tab order: "${want}" not reached in order; saw ${seen.join(' > ')}`);
      at = i;
    }
    // Enter on a navigation link opens the page and focus lands on its heading.
    await page.getByRole('link', { name: 'Queues' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Queues' }).waitFor();
    await until(() => page.evaluate(() => document.activeElement.tagName === 'H1'), 'focus does not move to the new page\'s heading', 5000);
    expectClean(problems, [...SIGNED_OUT, ...NOT_YET], 'labels and keyboard');
  }],

  ['create_campaign', async (page) => {
    const problems = watch(page, SIGNED_OUT);
    await signInWithForm(page);
    await page.getByRole('link', { name: 'New campaign' }).first().click();
    await page.getByRole('heading', { level: 1, name: 'New campaign' }).waitFor();
    const audience = page.locator('output.big');
    await until(async () => /^\d[\d,]*$/.test((await audience.textContent()).trim()), 'no audience preview');
    const everyone = num(await audience.textContent());
    await page.getByLabel('Name', { exact: true }).fill('Browser VIP sale');
    await page.getByLabel('Minimum total spend').fill('5000');
    await until(async () => { const t = (await audience.textContent()).trim(); return /^\d/.test(t) && num(t) < everyone; },
      'the audience preview does not follow the rules');
    const expected = num(await audience.textContent());
    check(expected > 0, 'no seeded customer spends 5000 or more');
    // Suggested tags follow the name and the rules ("VIP" -> Loyalty; min_spend >= 4000 -> High value).
    await page.getByRole('checkbox', { name: 'High value customers' }).waitFor();
    await page.getByRole('checkbox', { name: 'Loyalty' }).check();
    const template = page.getByLabel('Message template');
    await template.fill('Hello {{name}}, you spent {{total_spend}}.');
    await until(async () => /^Hello .+, you spent [\d.]+\.$/.test((await page.locator('blockquote.preview').textContent()).trim()),
      'no rendered message preview');
    await template.fill('Hello {{nmae}}');
    await page.locator('blockquote.preview.invalid').filter({ hasText: 'unknown placeholder {{nmae}}' }).waitFor();
    await template.fill('Hello {{name}}, you spent {{total_spend}}.');
    await screenshot(page, 'dashboard-new-campaign');
    await page.getByRole('button', { name: 'Create campaign' }).click();
    await page.getByRole('heading', { level: 1, name: 'Browser VIP sale' }).waitFor();
    // Watched live: the state reaches COMPLETED, the bar is full, the counters add up.
    await page.locator('.state .badge', { hasText: 'COMPLETED' }).waitFor({ timeout: 120000 });
    const bar = page.getByRole('progressbar', { name: 'Campaign progress' });
    await until(async () => num(await bar.getAttribute('value')) === expected && num(await bar.getAttribute('max')) === expected,
      `the progress bar does not reach ${expected}`);
    const sent = num(await page.locator('.counters .c-sent dd').textContent());
    const failed = num(await page.locator('.counters .c-failed dd').textContent());
    check(sent + failed === expected, `sent ${sent} + failed ${failed} != audience ${expected}`);
    check(await page.locator('.moves button').count() === 0, 'a finished campaign still offers actions');
    check((await page.locator('.details').textContent()).includes('Loyalty'), 'the chosen tag is not on the campaign');
    // The logs filtered by status: FAILED rows only, then all again.
    const filter = page.getByLabel('Status', { exact: true });
    await filter.selectOption('FAILED');
    if (failed > 0) {
      await until(async () => { const b = await page.locator('tbody .badge').allTextContents(); return b.length === Math.min(failed, 25) && b.every((t) => t === 'FAILED'); },
        'the FAILED filter shows other rows');
    } else {
      await page.getByText('No FAILED messages.').waitFor();
    }
    await filter.selectOption('');
    await until(async () => await page.locator('tbody tr').count() === Math.min(expected, 25), 'the unfiltered logs do not come back');
    await screenshot(page, 'dashboard-campaign');
    await go(page, '/', 'Overview');
    await page.getByRole('link', { name: 'Browser VIP sale' }).first().waitFor();
    expectClean(problems, SIGNED_OUT, 'creating a campaign');
  }],

  ['pause_resume', async (page) => {
    const problems = watch(page, SIGNED_OUT);
    await signInFast(page);
    await go(page, '/campaigns/new', 'New campaign');
    // Every customer at 20 messages per second: seconds of sending, time to press Pause.
    await page.getByLabel('Name', { exact: true }).fill('Browser pause test');
    await page.getByLabel('Rate limit (messages per second)').fill('20');
    await page.getByRole('button', { name: 'Create campaign' }).click();
    await page.getByRole('heading', { level: 1, name: 'Browser pause test' }).waitFor();
    check((await page.locator('.details').textContent()).includes('20 / s'), 'the campaign does not show its rate limit');
    const badge = page.locator('.state .badge');
    // While it sends: Pause (and Cancel for an admin), never Resume.
    const pause = page.getByRole('button', { name: 'Pause' });
    await pause.waitFor();
    check(await page.getByRole('button', { name: 'Resume' }).count() === 0, 'Resume offered on a running campaign');
    check(await page.getByRole('button', { name: 'Cancel' }).count() === 1, 'no Cancel for an admin on a running campaign');
    await pause.click();
    await badge.filter({ hasText: 'PAUSED' }).waitFor({ timeout: 30000 });
    await page.getByRole('button', { name: 'Resume' }).waitFor();
    check(await page.getByRole('button', { name: 'Pause' }).count() === 0, 'Pause offered on a paused campaign');
    const held = num(await page.locator('.counters .c-pending dd').textContent());
    await screenshot(page, 'dashboard-campaign-paused');
    await page.getByRole('button', { name: 'Resume' }).click();
    await until(async () => /SENDING|QUEUED|COMPLETED/.test(await badge.textContent()), 'the campaign does not resume');
    await badge.filter({ hasText: 'COMPLETED' }).waitFor({ timeout: 120000 });
    const bar = page.getByRole('progressbar', { name: 'Campaign progress' });
    await until(async () => num(await bar.getAttribute('value')) === num(await bar.getAttribute('max')), 'the progress bar is not full after resuming');
    console.log(`  paused with ${held} messages pending`);
    // Opens, clicks and bounces arrive after the receipts (web_env turns the vendor's events
    // on): the page shows each as GET /api/campaigns/:id gives it.
    const cid = page.url().split('/').pop();
    const events = ['bounced', 'opened', 'clicked'];
    await until(async () => {
      const r = await pageFetch(page, 'GET', '/api/campaigns/' + cid);
      const p = (r.json && r.json.progress) || {};
      if (!events.every((k) => p[k] > 0)) return false;
      for (const k of events) {
        const el = page.locator(`.counters .c-${k} dd`);
        if (!(await el.count()) || num(await el.textContent()) !== p[k]) return false;
      }
      return true;
    }, 'the page does not show bounced, opened and clicked as the API counts them', 60000);
    await page.locator('.counters .c-opened .share').filter({ hasText: '% of sent' }).waitFor();
    // The README's pictures: this campaign (its chart shows the pause), then the overview
    // reached by its link, so the page keeps the live figures it saw (messages per second).
    await until(async () => (await page.locator('#live').textContent()) === '', 'the announcement stays', 10000);
    await readmeShot(page, 'campaign');
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.getByRole('heading', { level: 1, name: 'Overview' }).waitFor();
    await page.getByRole('link', { name: 'Browser pause test' }).first().waitFor();
    await page.locator('.conn-live').waitFor();
    await readmeShot(page, 'overview');
    expectClean(problems, SIGNED_OUT, 'pausing and resuming');
  }],

  ['dead_letter', async (page) => {
    // A dead letter on the ai queue, in lib/queue's format; no minicrm-ai runs here, so once
    // requeued its job stays on the ai queue's ready list.
    const now = Date.now();
    execFileSync('redis-cli', ['-u', process.env.REDIS_URL, 'LPUSH', `${process.env.MINICRM_REDIS_PREFIX}{ai}:dead`,
      JSON.stringify({ queue: 'ai', job: { kind: 'suggest', id: 'browser-test' }, error: 'made by the browser test', attempts: 5, first_at: now, failed_at: now })]);
    const problems = watch(page, SIGNED_OUT);
    await signInFast(page);
    await go(page, '/queues', 'Queues');
    const aiRow = page.locator('table tbody tr', { has: page.locator('td:first-child', { hasText: /^ai$/ }) });
    await aiRow.waitFor();
    const aiReady = async () => num(await aiRow.locator('td').nth(1).textContent());
    const before = await aiReady();
    await page.getByLabel('Queue', { exact: true }).selectOption('ai');
    const row = page.locator('tbody tr', { hasText: 'made by the browser test' });
    await row.waitFor();
    await screenshot(page, 'dashboard-queues-dead-letter');
    // Requeue asks first; Escape keeps the dead letter.
    await row.getByRole('button', { name: /^Requeue dead letter/ }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    check(await row.count() === 1, 'Escape did not keep the dead letter');
    await row.getByRole('button', { name: /^Requeue dead letter/ }).click();
    await dialog.getByRole('button', { name: 'Requeue' }).click();
    await page.locator('#main').getByText('Requeued 1 dead letter of ai.').waitFor();
    await page.locator('#main').getByText('No dead letters in ai.').waitFor();
    await until(async () => (await aiReady()) === before + 1, `ai ready does not go from ${before} to ${before + 1}`, 15000);
    expectClean(problems, SIGNED_OUT, 'requeueing a dead letter');
  }],

  ['suppressions', async (page) => {
    const problems = watch(page, SIGNED_OUT);
    await signInFast(page);
    await go(page, '/suppressions', 'Suppressions');
    const addr = 'browser-suppressed@example.org';
    const listed = async (q = '') => {
      const r = await pageFetch(page, 'GET', '/api/suppressions?limit=100' + q);
      check(r.status === 200 && Array.isArray(r.json), `GET /api/suppressions answered ${r.status}`);
      return r.json.find((s) => s.email === addr);
    };
    check(!(await listed()), `${addr} is suppressed before the test`);
    await page.getByLabel('Email', { exact: true }).fill(addr);
    await page.getByLabel('Reason', { exact: true }).selectOption('complained');
    await page.getByRole('button', { name: 'Suppress', exact: true }).click();
    await page.locator('#main .ok').filter({ hasText: `${addr} suppressed (complained)` }).waitFor();
    const row = page.locator('tbody tr', { hasText: addr });
    await row.waitFor();
    const s = await listed();
    check(s && s.reason === 'complained', 'the API does not have the suppression: ' + JSON.stringify(s));
    // Again, as manual: the first suppression stays and the page says so.
    await page.getByLabel('Email', { exact: true }).fill(addr.toUpperCase());
    await page.getByLabel('Reason', { exact: true }).selectOption('manual');
    await page.getByRole('button', { name: 'Suppress', exact: true }).click();
    await page.locator('#main .ok').filter({ hasText: 'was already suppressed (complained)' }).waitFor();
    check((await listed()).reason === 'complained', 'a second suppression replaced the first');
    // The reason filter: the address under complained, not under manual.
    const show = page.getByLabel('Show reason');
    await show.selectOption('manual');
    await until(async () => (await row.count()) === 0, 'the manual filter still shows a complained address', 10000);
    await show.selectOption('complained');
    await row.waitFor();
    check(!!(await listed('&reason=complained')) && !(await listed('&reason=manual')), 'the API filter disagrees');
    await screenshot(page, 'dashboard-suppressions');
    // Remove asks first; Escape keeps it.
    await row.getByRole('button', { name: `Remove ${addr}` }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    check(!!(await listed()), 'Escape removed the suppression');
    await row.getByRole('button', { name: `Remove ${addr}` }).click();
    await dialog.getByRole('button', { name: 'Remove' }).click();
    await page.locator('#main .ok').filter({ hasText: `${addr} removed` }).waitFor();
    await until(async () => (await row.count()) === 0, 'the removed address is still listed', 10000);
    check(!(await listed()), 'the API still has the removed suppression');
    expectClean(problems, SIGNED_OUT, 'suppressing and removing an address');
  }],

  ['webhooks', async (page) => {
    const problems = watch(page, SIGNED_OUT);
    await signInFast(page);
    await go(page, '/webhooks', 'Webhooks');
    const url = 'https://hooks.example.com/minicrm/browser-test';
    const hooks = async () => {
      const r = await pageFetch(page, 'GET', '/api/webhooks');
      check(r.status === 200 && Array.isArray(r.json), `GET /api/webhooks answered ${r.status}`);
      return r;
    };
    const webhooksReady = async () => {
      const r = await pageFetch(page, 'GET', '/api/queues');
      return (r.json.queues.find((q) => q.name === 'webhooks') || {}).ready;
    };
    await page.getByLabel('URL', { exact: true }).fill(url);
    await page.getByLabel('Description (optional)').fill('browser test endpoint');
    // Two event types only.
    for (const box of await page.getByRole('checkbox').all()) {
      const name = await box.getAttribute('value');
      if (name !== 'campaign.completed' && name !== 'message.bounced') await box.uncheck();
    }
    await page.getByRole('button', { name: 'Add endpoint' }).click();
    const secretEl = page.locator('.secret-once code.secret');
    await secretEl.waitFor();
    const secret = (await secretEl.textContent()).trim();
    check(/^whsec_[A-Za-z0-9+/=]{20,}$/.test(secret), 'no signing secret shown: ' + secret);
    const row = page.locator('tbody tr', { hasText: url });
    await row.waitFor();
    check(!(await row.textContent()).includes(secret), 'the list shows the secret');
    let r = await hooks();
    const w = r.json.find((x) => x.url === url);
    check(w && w.status === 'enabled' && w.description === 'browser test endpoint', 'the API does not have the endpoint: ' + JSON.stringify(w));
    check(JSON.stringify(w.events.slice().sort()) === '["campaign.completed","message.bounced"]', 'events: ' + JSON.stringify(w.events));
    check(!r.text.includes(secret) && !r.text.includes('whsec_'), 'GET /api/webhooks shows the secret');
    await screenshot(page, 'dashboard-webhooks-created');
    // Shown once: not after the page is opened again.
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Webhooks' }).waitFor();
    await row.waitFor();
    check(!(await page.locator('#main').textContent()).includes(secret), 'the secret is shown again after a reload');
    // Its test event: one delivery job on the webhooks queue (no minicrm-webhooks runs here).
    const before = await webhooksReady();
    await row.getByRole('button', { name: `Send a test event to ${url}` }).click();
    const queued = page.locator('#main .ok', { hasText: `Test event queued for ${url}` });
    await queued.waitFor();
    const eventId = (await queued.locator('code.event-id').textContent()).trim();
    check(/^evt_[0-9a-f]{24}$/.test(eventId), 'no event id shown: ' + eventId);
    await until(async () => (await webhooksReady()) === before + 1, `webhooks ready does not go from ${before} to ${before + 1}`, 10000);
    const jobs = execFileSync('redis-cli', ['-u', process.env.REDIS_URL, 'LRANGE', `${process.env.MINICRM_REDIS_PREFIX}{webhooks}:ready`, '0', '-1']).toString();
    check(jobs.includes(eventId) && jobs.includes(w.id) && jobs.includes('webhook.test'), 'the test delivery is not on the webhooks queue');
    // Delete asks first.
    await row.getByRole('button', { name: `Delete ${url}` }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await until(async () => (await row.count()) === 0, 'the deleted endpoint is still listed', 10000);
    r = await hooks();
    check(!r.json.some((x) => x.url === url), 'the API still has the deleted endpoint');
    await page.getByText('No webhook endpoints.').waitFor();
    expectClean(problems, SIGNED_OUT, 'creating, testing and deleting a webhook');
  }],

  ['reschedule', async (page) => {
    const problems = watch(page, SIGNED_OUT);
    await signInFast(page);
    await go(page, '/campaigns/new', 'New campaign');
    await page.getByLabel('Name', { exact: true }).fill('Browser scheduled');
    await page.getByLabel('Minimum total spend').fill('9000');
    await page.getByLabel('Schedule for later').check();
    await page.getByRole('button', { name: 'Create campaign' }).click();
    await page.getByRole('heading', { level: 1, name: 'Browser scheduled' }).waitFor();
    await page.locator('.state .badge', { hasText: 'SCHEDULED' }).waitFor();
    check(await page.getByRole('button', { name: 'Pause' }).count() === 0, 'Pause offered on a scheduled campaign');
    const cid = page.url().split('/').pop();
    const sendAt = async () => Date.parse((await pageFetch(page, 'GET', '/api/campaigns/' + cid)).json.send_at);
    const first = await sendAt();
    // Two days later, at a whole minute (the field has minutes).
    const when = new Date(first + 2 * 86400e3);
    when.setSeconds(0, 0);
    const local = new Date(when.getTime() - when.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    await page.getByLabel('New send time').fill(local);
    await page.getByRole('button', { name: 'Reschedule', exact: true }).click();
    await until(async () => (await sendAt()) === when.getTime(), `send_at does not become ${when.toISOString()}`, 10000);
    await page.locator('.state', { hasText: when.toISOString().replace('T', ' ').slice(0, 16) }).waitFor();
    await page.locator('.state .badge', { hasText: 'SCHEDULED' }).waitFor();
    await screenshot(page, 'dashboard-campaign-scheduled');
    // An admin may cancel it (confirmed); the form goes with the state.
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel campaign' }).click();
    await page.locator('.state .badge', { hasText: 'CANCELLED' }).waitFor();
    check(await page.getByLabel('New send time').count() === 0, 'Reschedule still offered on a cancelled campaign');
    check((await pageFetch(page, 'GET', '/api/campaigns/' + cid)).json.status === 'CANCELLED', 'the API does not have it CANCELLED');
    expectClean(problems, SIGNED_OUT, 'rescheduling a campaign');
  }],

  ['history_chart', async (page) => {
    // Campaigns ran in the cases above: the overview opened now draws their messages per
    // second from the stream's first (history) event: hundreds of points at once, which a few
    // live ticks could not give.
    const problems = watch(page, SIGNED_OUT);
    await signInFast(page);
    const line = page.locator('section[aria-labelledby="h-rate"] svg path.line');
    let shape = null;
    await until(async () => {
      if (!(await line.count())) return false;
      const d = await line.first().getAttribute('d');
      const ys = [...d.matchAll(/[ML][\d.]+,([\d.]+)/g)].map((m) => Number(m[1]));
      shape = { points: ys.length, distinct: new Set(ys).size };
      return ys.length >= 300 && shape.distinct > 1;
    }, 'the messages per second chart is not full at once: ' + JSON.stringify(shape), 5000);
    console.log(`  messages/s chart on opening: ${shape.points} points`);
    // The stream's history itself: 600 seconds, some of them with messages.
    const hist = await page.evaluate(() => new Promise((resolve, reject) => {
      const es = new EventSource('/api/events');
      const timer = setTimeout(() => { es.close(); reject(new Error('no history event within 5 s')); }, 5000);
      es.addEventListener('history', (ev) => { clearTimeout(timer); es.close(); resolve(JSON.parse(ev.data)); });
    }));
    check(hist.messages.length === 600 && hist.step_ms === 1000 && hist.messages.some((v) => v > 0),
      'the history holds no messages: ' + JSON.stringify(hist).slice(0, 200));
    await screenshot(page, 'dashboard-overview-history');
    expectClean(problems, SIGNED_OUT, 'the history of messages per second');
  }],
]);
