// Suppressions (admin): the addresses minicrm never mails ({email, reason, at, source}),
// paged, with a form to add one and a button to remove one. On a server without the
// /api/suppressions routes (404) the page says so instead.

import { get, post, del, qs } from '../api.js';
import { h, field, page, table, pager, fmtDate, errorBox, confirmDialog, announce } from '../dom.js';

const LIMIT = 50;
const REASONS = ['manual', 'unsubscribed', 'bounced', 'complained'];

export function notAvailable(what) {
  return h('p', { class: 'notice', role: 'status' }, `${what} are not available on this server (its API has no such route yet).`);
}

export async function render(main) {
  const box = h('div', {});
  const email = h('input', { type: 'email', name: 'email', required: true, autocomplete: 'off' });
  const reason = h('select', { name: 'reason' }, REASONS.map((r) => h('option', { value: r }, r)));
  const msg = h('div', { class: 'formmsg' });
  const form = h('form', { class: 'card', 'aria-labelledby': 'h-add' }, h('h2', { id: 'h-add', text: 'Suppress an address' }),
    h('div', { class: 'inline' }, field('Email', email), field('Reason', reason)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Suppress'), msg));
  page(main, 'Suppressions', h('section', { class: 'card' }, box), form);
  let pageNo = 1;

  async function load() {
    let r;
    try {
      r = await get('/api/suppressions' + qs({ limit: LIMIT, page: pageNo }));
    } catch (e) {
      if (e.notAvailable) { box.replaceChildren(notAvailable('Suppressions')); form.hidden = true; return; }
      box.replaceChildren(errorBox(e));
      return;
    }
    const rows = Array.isArray(r) ? r : r.suppressions || r.items || [];
    box.replaceChildren(table('Suppressed addresses', [
      { label: 'Email', get: (s) => s.email },
      { label: 'Reason', get: (s) => s.reason || '—' },
      { label: 'Since', get: (s) => fmtDate(s.at) },
      { label: 'Source', get: (s) => s.source || '—' },
      { label: 'Actions', get: (s) => h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ${s.email}`, onclick: () => remove(s.email) }, 'Remove') },
    ], rows, 'No suppressed addresses.'), pager({ page: pageNo, hasNext: rows.length === LIMIT, label: 'Suppression pages' }, (p) => { pageNo = p; load(); }));
  }

  async function remove(addr) {
    if (!(await confirmDialog(`Remove ${addr}?`, 'minicrm may mail this address again.', 'Remove'))) return;
    try { await del('/api/suppressions/' + encodeURIComponent(addr)); announce(`${addr} removed.`); } catch (e) { msg.replaceChildren(errorBox(e)); }
    load();
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.replaceChildren();
    try {
      await post('/api/suppressions', { email: email.value.trim(), reason: reason.value });
      announce(`${email.value.trim()} suppressed.`);
      email.value = '';
      load();
    } catch (err) { msg.replaceChildren(errorBox(err)); }
  });
  await load();
}
