// One customer: the record, their orders (GET /orders?customer_id=, with a form to add one) and
// their messages (GET /communication?customer_id=), each paged.

import { get, post, qs } from '../api.js';
import { h, field, page, table, pager, fmtNum, fmtDate, badge, errorBox, announce } from '../dom.js';

const LIMIT = 20;

export async function render(main, ctx) {
  const id = ctx.params.id;
  let c;
  try {
    c = await get('/customers/' + encodeURIComponent(id));
  } catch (e) {
    page(main, 'Customer', errorBox(e.status === 404 || e.status === 400 ? 'No such customer.' : e));
    return;
  }
  const info = h('dl', { class: 'details' });
  const ordersBox = h('div', {});
  const msgsBox = h('div', {});
  const amount = h('input', { type: 'number', name: 'amount', min: 0.01, step: 'any', required: true });
  const status = h('select', { name: 'status' }, h('option', { value: 'completed' }, 'completed'), h('option', { value: 'cancelled' }, 'cancelled'));
  const orderMsg = h('div', { class: 'formmsg' });
  const orderForm = h('form', { class: 'inline' }, field('Amount', amount), field('Status', status),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add order'), orderMsg));
  page(main, c.name,
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'h-info' }, h('h2', { id: 'h-info', text: 'Customer' }), info),
      h('section', { class: 'card wide', 'aria-labelledby': 'h-orders' }, h('h2', { id: 'h-orders', text: 'Orders' }), orderForm, ordersBox),
      h('section', { class: 'card wide', 'aria-labelledby': 'h-msgs' }, h('h2', { id: 'h-msgs', text: 'Messages' }), msgsBox)),
    h('p', {}, h('a', { href: '#/customers' }, '← All customers')));

  function drawInfo() {
    info.replaceChildren(...[
      ['Email', c.email], ['Phone', c.phone || '—'], ['Total spend', fmtNum(c.total_spend)],
      ['Last visit', fmtDate(c.last_visit_date)], ['Added', fmtDate(c.createdAt)],
    ].map(([k, v]) => h('div', {}, h('dt', { text: k }), h('dd', { text: v }))));
  }

  let oPage = 1, mPage = 1;
  async function loadOrders() {
    try {
      const rows = await get('/orders' + qs({ customer_id: id, limit: LIMIT, page: oPage }));
      ordersBox.replaceChildren(table(`Orders of ${c.name}`, [
        { label: 'Date', get: (o) => fmtDate(o.date || o.createdAt) },
        { label: 'Amount', get: (o) => fmtNum(o.amount) },
        { label: 'Status', get: (o) => badge(o.status) },
      ], rows, 'No orders.'), pager({ page: oPage, hasNext: rows.length === LIMIT, label: 'Order pages' }, (p) => { oPage = p; loadOrders(); }));
    } catch (e) { ordersBox.replaceChildren(errorBox(e)); }
  }
  async function loadMsgs() {
    try {
      const r = await get('/communication' + qs({ customer_id: id, limit: LIMIT, page: mPage }));
      const rows = r.logs || [];
      msgsBox.replaceChildren(table(`Messages to ${c.name}`, [
        { label: 'Date', get: (l) => fmtDate(l.createdAt) },
        { label: 'Campaign', get: (l) => (l.campaign_id && l.campaign_id.name ? h('a', { href: '#/campaigns/' + (l.campaign_id._id.$oid || l.campaign_id._id) }, l.campaign_id.name) : 'one-off') },
        { label: 'Status', get: (l) => badge(l.status) },
        { label: 'Message', get: (l) => h('span', { class: 'msg', text: l.message || '' }) },
      ], rows, 'No messages.'), pager({ page: mPage, hasNext: rows.length === LIMIT, label: 'Message pages' }, (p) => { mPage = p; loadMsgs(); }));
    } catch (e) { msgsBox.replaceChildren(errorBox(e)); }
  }

  orderForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    orderMsg.replaceChildren();
    try {
      await post('/orders', { customer_id: id, amount: Number(amount.value), status: status.value });
      amount.value = '';
      announce('Order added.');
      c = await get('/customers/' + encodeURIComponent(id));
      drawInfo();
      oPage = 1;
      loadOrders();
    } catch (err) { orderMsg.replaceChildren(errorBox(err)); }
  });
  drawInfo();
  await Promise.all([loadOrders(), loadMsgs()]);
}
