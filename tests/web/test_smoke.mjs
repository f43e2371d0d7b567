// test_smoke: the harness itself against the served dashboard, in headless Chromium.
//   index_without_errors   / loads with no console error, no failed request, the CSP header,
//                          and a screenshot (web-artifacts/smoke-index.png)
//   sign_in_with_key       POST /auth/key from the page: the HttpOnly cookie signs in, the key
//                          is kept nowhere in the page (cookie jar, storage)
//   cookie_post_passes_csrf a POST from the page (the browser's own Origin) is accepted, the
//                          same POST signed in by cookie from another origin is refused
//   live_events            EventSource('/api/events') in the page gets a tick with every queue
import {
  base, keys, watch, expectNoProblems, signIn, pageFetch, screenshot, runCases,
} from './lib/browser.mjs';

await runCases([
  ['index_without_errors', async (page) => {
    const problems = watch(page, [/\/auth\/me$/]); // the page asks it before signing in: 401
    const res = await page.goto('/', { waitUntil: 'networkidle' });
    if (res.status() !== 200) throw new Error(`GET / answered ${res.status()}`);
    const csp = res.headers()['content-security-policy'] || '';
    if (!csp.includes("script-src 'self'")) throw new Error(`no strict CSP on /: "${csp}"`);
    expectNoProblems(problems, 'loading /');
    await screenshot(page, 'smoke-index');
  }],

  ['sign_in_with_key', async (page, context) => {
    const problems = watch(page, [/\/auth\/me$/]); // the page asks it before signing in: 401
    await page.goto('/');
    const me = await signIn(page, 'staff');
    if (!me.loggedIn || me.user.role !== 'staff') throw new Error(`sign-in answered ${JSON.stringify(me)}`);
    const who = await pageFetch(page, 'GET', '/auth/me');
    if (who.status !== 200 || !who.json.loggedIn) throw new Error(`/auth/me: ${who.status} ${who.text}`);
    const cookies = await context.cookies();
    const sid = cookies.find((c) => c.name === 'sid');
    if (!sid || !sid.httpOnly) throw new Error(`no HttpOnly sid cookie: ${JSON.stringify(cookies)}`);
    const visible = await page.evaluate(() => document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage));
    if (visible.includes('mck_') || visible.includes('sid=')) throw new Error(`the page can see a credential: ${visible}`);
    if (cookies.some((c) => c.value.includes(keys.staff))) throw new Error('the key is in a cookie');
    expectNoProblems(problems, 'signing in');
  }],

  ['cookie_post_passes_csrf', async (page) => {
    await page.goto('/');
    await signIn(page, 'staff');
    const ok = await pageFetch(page, 'POST', '/api/campaigns/preview', { rules: { min_spend: 1 } });
    if (ok.status !== 200 || typeof ok.json.audience_size !== 'number') {
      throw new Error(`preview from the page: ${ok.status} ${ok.text}`);
    }
    // The same cookie from another origin (a page elsewhere): refused.
    const cookie = (await page.context().cookies()).find((c) => c.name === 'sid');
    const r = await fetch(`${base}/api/campaigns/preview`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Cookie: `sid=${cookie.value}`, Origin: 'http://evil.test' },
      body: JSON.stringify({ rules: { min_spend: 1 } }),
    });
    if (r.status !== 403) throw new Error(`cross-site POST answered ${r.status}`);
  }],

  ['live_events', async (page) => {
    const problems = watch(page, [/\/auth\/me$/]); // the page asks it before signing in: 401
    await page.goto('/');
    await signIn(page, 'staff');
    const tick = await page.evaluate(() => new Promise((resolve, reject) => {
      const es = new EventSource('/api/events');
      const timer = setTimeout(() => { es.close(); reject(new Error('no tick within 5 s')); }, 5000);
      es.addEventListener('tick', (ev) => {
        clearTimeout(timer);
        es.close();
        resolve({ id: ev.lastEventId, data: JSON.parse(ev.data) });
      });
    }));
    if (!tick.id || tick.data.queues.length !== 9 || !Array.isArray(tick.data.campaigns)) {
      throw new Error(`unexpected tick: ${JSON.stringify(tick).slice(0, 300)}`);
    }
    expectNoProblems(problems, 'the event stream');
  }],
]);
