// app: the dashboard's shell. Hash routes (#/queues, #/campaigns/<id>, ...), one module per
// page under pages/, loaded on first visit. Each page module exports
//   render(main, ctx)   build the page into <main>; ctx = {user, params, query, go}
// and may return a cleanup function (unsubscribe from live updates, stop timers), called when
// the user leaves the page. The signed-in user comes from GET /auth/me; without a session every
// route shows the sign-in page.

import { get, post, setUnauthorizedHandler } from './api.js';
import { h, errorBox, page } from './dom.js';
import * as sse from './sse.js';

const ROUTES = [
  { path: '/signin', mod: 'signin', title: 'Sign in', public: true },
  { path: '/', mod: 'overview', nav: 'Overview' },
  { path: '/campaigns/new', mod: 'newcampaign', nav: 'New campaign' },
  { path: '/campaigns/:id', mod: 'campaign' },
  { path: '/customers', mod: 'customers', nav: 'Customers' },
  { path: '/customers/:id', mod: 'customer' },
  { path: '/orders', mod: 'orders', nav: 'Orders' },
  { path: '/queues', mod: 'queues', nav: 'Queues', admin: true },
  { path: '/suppressions', mod: 'suppressions', nav: 'Suppressions', admin: true },
  { path: '/webhooks', mod: 'webhooks', nav: 'Webhooks', admin: true },
  { path: '/keys', mod: 'keys', nav: 'API keys', admin: true },
  { path: '/users', mod: 'users', nav: 'Users', admin: true },
];

let user = null;
let cleanup = null;

// The state of the live connection in the header: one element, one subscription for the tab.
const connDot = h('span', { class: 'conn', title: 'live updates' });
sse.onStatus((s) => {
  connDot.className = 'conn conn-' + s;
  connDot.textContent = s === 'live' ? '● live' : s === 'polling' ? '● polling' : s === 'idle' ? '' : '● reconnecting';
});
let renderSeq = 0;

function match(path) {
  for (const r of ROUTES) {
    const a = r.path.split('/'), b = path.split('/');
    if (a.length !== b.length) continue;
    const params = {};
    if (a.every((seg, i) => (seg.startsWith(':') ? ((params[seg.slice(1)] = decodeURIComponent(b[i])), b[i] !== '') : seg === b[i])))
      return { route: r, params };
  }
  return null;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, q] = raw.split('?');
  return { path, query: new URLSearchParams(q || '') };
}

export function go(path) {
  if (location.hash === '#' + path) route();
  else location.hash = path;
}

function renderNav(current) {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!user) {
    nav.hidden = true;
    nav.replaceChildren();
    who.replaceChildren();
    return;
  }
  nav.hidden = false;
  const items = ROUTES.filter((r) => r.nav && (!r.admin || user.role === 'admin'));
  nav.replaceChildren(h('ul', {}, items.map((r) =>
    h('li', {}, h('a', { href: '#' + r.path, 'aria-current': r === current ? 'page' : null }, r.nav)))));
  who.replaceChildren(connDot, h('span', { text: `${user.displayName || user.email || 'signed in'} (${user.role})` }),
    h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'));
}

async function signOut() {
  try { await post('/auth/logout'); } catch { /* the session is gone either way */ }
  user = null;
  sse.stop();
  go('/signin');
}

export async function refreshUser() {
  try {
    const me = await get('/auth/me', { allow401: true });
    user = me && me.loggedIn ? me.user : null;
  } catch (e) {
    if (e.status !== 401) throw e;
    user = null;
  }
  return user;
}

async function route() {
  const seq = ++renderSeq;
  if (cleanup) { try { cleanup(); } catch { /* page gone */ } cleanup = null; }
  const main = document.getElementById('main');
  const { path, query } = parseHash();
  let m = match(path);
  if (!m) {
    renderNav(null);
    page(main, 'Not found', h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Go to the overview.')));
    return;
  }
  if (!m.route.public && !user) m = match('/signin');
  else if (m.route.path === '/signin' && user) m = match('/');
  if (m.route.admin && user && user.role !== 'admin') {
    renderNav(m.route);
    page(main, m.route.nav, h('p', { class: 'error', role: 'alert' }, 'This page is for admins.'));
    return;
  }
  renderNav(m.route);
  try {
    const mod = await import(`./pages/${m.route.mod}.js`);
    if (seq !== renderSeq) return;
    const c = await mod.render(main, { user, params: m.params, query, go, refreshUser });
    if (seq !== renderSeq) { if (typeof c === 'function') c(); return; }
    cleanup = typeof c === 'function' ? c : null;
  } catch (e) {
    if (seq !== renderSeq) return;
    console.warn(e);
    main.append(errorBox(e));
  }
}

setUnauthorizedHandler(() => {
  if (!user) return;
  user = null;
  sse.stop();
  go('/signin');
});

window.addEventListener('hashchange', route);
window.addEventListener('DOMContentLoaded', async () => {
  try { await refreshUser(); } catch (e) { document.getElementById('main').replaceChildren(errorBox(e)); return; }
  route();
});
