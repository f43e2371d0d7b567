// Orders: every order, newest first, in pages of 25, each with its customer.

import { get, qs } from '../api.js';
import { h, page, table, pager, fmtNum, fmtDate, badge, errorBox, idOf } from '../dom.js';

const LIMIT = 25;

export async function render(main) {
  const box = h('div', {});
  page(main, 'Orders', h('section', { class: 'card' }, box));
  let pageNo = 1;
  async function load() {
    try {
      const rows = await get('/orders' + qs({ limit: LIMIT, page: pageNo }));
      box.replaceChildren(table('Orders, newest first', [
        { label: 'Date', get: (o) => fmtDate(o.date || o.createdAt) },
        { label: 'Customer', get: (o) => (o.customer_id && o.customer_id.name ? h('a', { href: '#/customers/' + idOf(o.customer_id) }, o.customer_id.name) : '—') },
        { label: 'Email', get: (o) => (o.customer_id && o.customer_id.email) || '—' },
        { label: 'Amount', get: (o) => fmtNum(o.amount) },
        { label: 'Status', get: (o) => badge(o.status) },
      ], rows, 'No orders yet.'), pager({ page: pageNo, hasNext: rows.length === LIMIT, label: 'Order pages' }, (p) => { pageNo = p; load(); }));
    } catch (e) { box.replaceChildren(errorBox(e)); }
  }
  await load();
}
