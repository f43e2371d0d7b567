// Customers: search by name or email (GET /customers?q=, 300 ms after typing stops), the list
// in pages of 25, and a form to add one (POST /customers).

import { get, post, qs } from '../api.js';
import { h, field, page, table, pager, fmtNum, fmtDate, idOf, errorBox, announce } from '../dom.js';

const LIMIT = 25;

export async function render(main, ctx) {
  const search = h('input', { type: 'search', name: 'q', autocomplete: 'off', value: ctx.query.get('q') || '' });
  const listBox = h('div', { 'aria-live': 'polite' });
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off' });
  const email = h('input', { type: 'email', name: 'email', required: true, autocomplete: 'off' });
  const phone = h('input', { type: 'tel', name: 'phone', autocomplete: 'off' });
  const spend = h('input', { type: 'number', name: 'total_spend', min: 0, step: 'any' });
  const addMsg = h('div', { class: 'formmsg' });
  const add = h('form', { class: 'card', 'aria-labelledby': 'h-add' },
    h('h2', { id: 'h-add', text: 'Add a customer' }),
    h('div', { class: 'inline' }, field('Name', name), field('Email', email), field('Phone (optional)', phone), field('Total spend (optional)', spend)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add customer'), addMsg));
  page(main, 'Customers',
    h('section', { class: 'card', 'aria-labelledby': 'h-list' },
      h('h2', { id: 'h-list', class: 'sr-only', text: 'Customer list' }),
      h('form', { role: 'search', onsubmit: (e) => { e.preventDefault(); pageNo = 1; load(); } },
        field('Search by name or email', search)),
      listBox),
    add);

  let pageNo = 1;
  let seq = 0;
  async function load() {
    const my = ++seq;
    try {
      const rows = await get('/customers' + qs({ limit: LIMIT, page: pageNo, q: search.value.trim() }));
      if (my !== seq) return;
      listBox.replaceChildren(
        table('Customers', [
          { label: 'Name', get: (c) => h('a', { href: '#/customers/' + idOf(c) }, c.name) },
          { label: 'Email', get: (c) => c.email },
          { label: 'Total spend', get: (c) => fmtNum(c.total_spend) },
          { label: 'Last visit', get: (c) => fmtDate(c.last_visit_date) },
          { label: 'Added', get: (c) => fmtDate(c.createdAt) },
        ], rows, search.value.trim() ? 'No customer matches.' : 'No customers yet.'),
        pager({ page: pageNo, hasNext: rows.length === LIMIT, label: 'Customer pages' }, (p) => { pageNo = p; load(); }));
    } catch (e) {
      if (my === seq) listBox.replaceChildren(errorBox(e));
    }
  }
  let timer;
  search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(() => { pageNo = 1; load(); }, 300); });

  add.addEventListener('submit', async (e) => {
    e.preventDefault();
    addMsg.replaceChildren();
    const body = { name: name.value.trim(), email: email.value.trim() };
    if (phone.value.trim()) body.phone = phone.value.trim();
    if (spend.value.trim()) body.total_spend = Number(spend.value);
    try {
      const r = await post('/customers', body);
      announce(`Customer ${r.customer.name} added.`);
      for (const el of [name, email, phone, spend]) el.value = '';
      addMsg.replaceChildren(h('p', { class: 'ok' }, 'Added ', h('a', { href: '#/customers/' + idOf(r.customer) }, r.customer.name), '.'));
      load();
    } catch (err) {
      addMsg.replaceChildren(errorBox(err));
    }
  });
  await load();
  return () => clearTimeout(timer);
}
