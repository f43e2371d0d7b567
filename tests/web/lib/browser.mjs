// browser.mjs: the shared part of minicrm's browser tests (tests/web/README.md).
//
// web_env has started the whole system (API serving web/, workers, receipts, vendor simulator
// on private Redis + devdb) and run_browser_test.sh has installed playwright-core; this module
// launches Debian's Chromium through it (never a downloaded browser), signs in the way the
// dashboard does, records every console error, page error, failed request and HTTP error of a
// page, and saves screenshots into the build directory (MINICRM_WEB_ARTIFACTS).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(path.join(process.env.MINICRM_WEB_NODE_MODULES, 'x.js'));
const { chromium } = require('playwright-core');

export const base = process.env.MINICRM_WEB_BASE;
export const keys = {
  admin: process.env.MINICRM_WEB_ADMIN_KEY,
  staff: process.env.MINICRM_WEB_STAFF_KEY,
};
export const artifacts = process.env.MINICRM_WEB_ARTIFACTS;

// Wait until GET /readyz answers 200 (the API and both stores are up).
export async function waitReady(timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.status === 200) return;
    } catch (e) { /* not listening yet */ }
    if (Date.now() > end) throw new Error(`${base}/readyz never answered 200`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

// A headless Chromium and one browser context (its own cookie jar) on the API's origin.
export async function openBrowser() {
  const browser = await chromium.launch({
    executablePath: process.env.MINICRM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // The test machines run as root, where Chromium's sandbox cannot start.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 860 } });
  return { browser, context };
}

// Record what goes wrong on a page: console errors, uncaught exceptions, requests that fail
// and answers >= 400. `allow` lists regular expressions of URLs whose HTTP errors are expected
// (e.g. /\/auth\/me$/ before signing in). Returns the array problems are pushed to.
export function watch(page, allow = []) {
  const problems = [];
  const allowed = (url) => allow.some((re) => re.test(url));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()} (${m.location().url || page.url()})`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure() ? r.failure().errorText : 'failed';
    // An open event stream is cut when the page goes away: not a failure of the page.
    if (why === 'net::ERR_ABORTED' && /\/api\/events$/.test(r.url())) return;
    if (!allowed(r.url())) problems.push(`request failed: ${r.method()} ${r.url()}: ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !allowed(r.url())) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  return problems;
}

export function expectNoProblems(problems, what) {
  if (problems.length) throw new Error(`${what}:\n  ${problems.join('\n  ')}`);
}

// Sign in as the dashboard does: the page sends the key once (POST /auth/key, JSON, from the
// API's own origin) and keeps nothing but the HttpOnly session cookie the answer sets.
// The page must already show a document of the API's origin (e.g. after page.goto('/')).
export async function signIn(page, role = 'admin') {
  const r = await page.evaluate(async (key) => {
    const res = await fetch('/auth/key', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ key }),
    });
    return { status: res.status, body: await res.text() };
  }, keys[role]);
  if (r.status !== 200) throw new Error(`POST /auth/key answered ${r.status}: ${r.body}`);
  return JSON.parse(r.body);
}

// fetch() from inside the page (same origin, the session cookie, the browser's own Origin
// header): { status, json }.
export async function pageFetch(page, method, url, body) {
  return page.evaluate(async ({ method, url, body }) => {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(url, init);
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
    return { status: res.status, json, text };
  }, { method, url, body });
}

// A full-page screenshot into the build directory's artefacts: <artifacts>/<name>.png.
export async function screenshot(page, name) {
  fs.mkdirSync(artifacts, { recursive: true });
  const file = path.join(artifacts, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// Run the named cases in order, each printed as "ok NAME" or "not ok NAME" with the error;
// the process exits 1 if any failed. Each case gets a fresh page in a fresh context.
export async function runCases(cases) {
  await waitReady();
  const { browser, context: first } = await openBrowser();
  await first.close();
  let failed = 0;
  try {
    for (const [name, fn] of cases) {
      const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 860 } });
      const page = await context.newPage();
      const t0 = Date.now();
      try {
        await fn(page, context);
        console.log(`ok ${name} (${Date.now() - t0} ms)`);
      } catch (e) {
        failed++;
        console.log(`not ok ${name} (${Date.now() - t0} ms)`);
        console.error(`  ${e.stack || e}`);
        try { await screenshot(page, `FAILED-${name}`); } catch (e2) { /* page gone */ }
      }
      await context.close();
    }
  } finally {
    await browser.close();
  }
  console.log(`${cases.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
