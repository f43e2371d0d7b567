// Suppressions (admin): the addresses minicrm never mails ({email, reason, at, source}), as
// GET /api/suppressions answers them (an array, newest first, ?reason= &limit= &page=), paged
// and filtered by reason, with a form to add one (POST: 201 created, or 200 with created false
// when the address was already suppressed: the first suppression stays) and a button to
// remove one (DELETE /api/suppressions/:email, admin). On a server without the routes (404)
// the page says so instead.

import { get, post, del, qs } from '../api.js';
import { h, field, page, table, pager, fmtDate, errorBox, confirmDialog } from '../dom.js';

const LIMIT = 50;
const REASONS = ['manual', 'unsubscribed', 'bounced', 'complained'];

export function notAvailable(what) {
  return h('p', { class: 'notice', role: 'status' }, `${what} are not available on this server (its API has no such route yet).`);
}

export async function render(main) {
  const box = h('div', {});
  const email = h('input', { type: 'email', name: 'email', required: true, autocomplete: 'off' });
  const reason = h('select', { name: 'reason' }, REASONS.map((r) => h('option', { value: r }, r)));
  const msg = h('div', { class: 'formmsg', 'aria-live': 'polite' });
  const only = h('select', { name: 'reason-filter' }, h('option', { value: '' }, 'All'), REASONS.map((r) => h('option', { value: r }, r)));
  const form = h('form', { class: 'card', 'aria-labelledby': 'h-add' }, h('h2', { id: 'h-add', text: 'Suppress an address' }),
    h('div', { class: 'inline' }, field('Email', email), field('Reason', reason)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Suppress'), msg));
  page(main, 'Suppressions',
    h('section', { class: 'card', 'aria-labelledby': 'h-list' },
      h('div', { class: 'row' }, h('h2', { id: 'h-list', text: 'Suppressed addresses' }), field('Show reason', only)), box),
    form);
  let pageNo = 1;

  async function load() {
    let r;
    try {
      r = await get('/api/suppressions' + qs({ limit: LIMIT, page: pageNo, reason: only.value }));
    } catch (e) {
      if (e.notAvailable) { box.replaceChildren(notAvailable('Suppressions')); form.hidden = true; return; }
      box.replaceChildren(errorBox(e));
      return;
    }
    const rows = Array.isArray(r) ? r : [];
    box.replaceChildren(table('Suppressed addresses', [
      { label: 'Email', get: (s) => s.email },
      { label: 'Reason', get: (s) => s.reason || '—' },
      { label: 'Since', get: (s) => fmtDate(s.at) },
      { label: 'Source', get: (s) => (s.source ? h('code', { text: s.source }) : 'manual entry') },
      { label: 'Actions', get: (s) => h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ${s.email}`, onclick: () => remove(s.email) }, 'Remove') },
    ], rows, only.value ? `No addresses suppressed as ${only.value}.` : 'No suppressed addresses.'), pager({ page: pageNo, hasNext: rows.length === LIMIT, label: 'Suppression pages' }, (p) => { pageNo = p; load(); }));
  }

  only.addEventListener('change', () => { pageNo = 1; load(); });

  async function remove(addr) {
    if (!(await confirmDialog(`Remove ${addr}?`, 'minicrm may mail this address again.', 'Remove'))) return;
    msg.replaceChildren();
    try {
      await del('/api/suppressions/' + encodeURIComponent(addr));
      msg.replaceChildren(h('p', { class: 'ok', text: `${addr} removed: minicrm may mail it again.` }));
    } catch (e) { msg.replaceChildren(errorBox(e)); }
    load();
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.replaceChildren();
    try {
      const r = await post('/api/suppressions', { email: email.value.trim(), reason: reason.value });
      const s = (r && r.suppression) || {};
      const addr = s.email || email.value.trim();
      msg.replaceChildren(h('p', { class: 'ok', text: r && r.created === false
        ? `${addr} was already suppressed (${s.reason || 'another reason'}); that suppression stays.`
        : `${addr} suppressed (${s.reason || reason.value}).` }));
      email.value = '';
      load();
    } catch (err) { msg.replaceChildren(errorBox(err)); }
  });
  await load();
}
