// Webhooks (admin): the endpoints minicrm posts events to, as GET /api/webhooks answers them
// (an array, newest first: id, url, events, description, status "enabled" | "disabled" with
// disabledReason, deliveries, failures, last {at, ok, status, error}); a form to add one (POST
// answers 201 {message, secret, webhook}: the signing secret is shown once, here, and never
// again); send a test event (POST /api/webhooks/:id/test: 202 {event_id}; 409 for a disabled
// endpoint, so only enabled ones offer it); delete (confirmed). On a server without
// /api/webhooks (404) the page says so instead.

import { get, post, del } from '../api.js';
import { h, field, page, table, badge, fmtDate, fmtNum, errorBox, confirmDialog, announce } from '../dom.js';
import { notAvailable } from './suppressions.js';

const EVENTS = ['campaign.started', 'campaign.completed', 'campaign.paused', 'campaign.cancelled',
  'message.failed', 'message.bounced', 'contact.unsubscribed', 'contact.complained'];

export async function render(main) {
  const box = h('div', {});
  const url = h('input', { type: 'url', name: 'url', required: true, placeholder: 'https://example.com/hooks/minicrm', autocomplete: 'off' });
  const desc = h('input', { type: 'text', name: 'description', maxlength: 200, autocomplete: 'off' });
  const boxes = EVENTS.map((ev, i) => h('input', { type: 'checkbox', id: 'ev-' + i, value: ev, checked: true }));
  const msg = h('div', { class: 'formmsg', 'aria-live': 'polite' });
  const form = h('form', { class: 'card', 'aria-labelledby': 'h-add' }, h('h2', { id: 'h-add', text: 'Add an endpoint' }),
    field('URL', url), field('Description (optional)', desc),
    h('fieldset', {}, h('legend', { text: 'Events' }), h('div', { class: 'tags' }, boxes.map((b) => h('span', { class: 'tag' }, b, h('label', { for: b.id, text: b.value }))))),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add endpoint'), msg));
  page(main, 'Webhooks', h('section', { class: 'card' }, box), form);

  async function load() {
    let r;
    try {
      r = await get('/api/webhooks');
    } catch (e) {
      if (e.notAvailable) { box.replaceChildren(notAvailable('Webhooks')); form.hidden = true; return; }
      box.replaceChildren(errorBox(e));
      return;
    }
    const rows = Array.isArray(r) ? r : [];
    box.replaceChildren(table('Webhook endpoints', [
      { label: 'URL', get: (w) => [h('code', { text: w.url }), w.description ? h('div', { class: 'muted', text: w.description }) : null] },
      { label: 'Events', get: (w) => (w.events || []).join(', ') },
      { label: 'Status', get: (w) => [badge(w.status), w.status === 'disabled' && w.disabledReason ? h('div', { class: 'muted', text: w.disabledReason }) : null] },
      { label: 'Deliveries', get: (w) => `${fmtNum(w.deliveries || 0)}${w.failures ? ` · ${fmtNum(w.failures)} failing` : ''}` },
      { label: 'Last delivery', get: (w) => lastDelivery(w.last) },
      { label: 'Actions', get: (w) => h('span', { class: 'actions' },
        w.status === 'enabled' ? h('button', { type: 'button', 'aria-label': `Send a test event to ${w.url}`, onclick: () => test(w) }, 'Test') : null,
        h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${w.url}`, onclick: () => remove(w) }, 'Delete')) },
    ], rows, 'No webhook endpoints.'));
  }

  function lastDelivery(l) {
    if (!l || !l.at) return '—';
    const what = l.ok ? `ok (${l.status})` : `failed${l.status ? ` (${l.status})` : ''}${l.error ? ': ' + l.error : ''}`;
    return h('span', { class: l.ok ? 'ok' : 'bad', text: `${fmtDate(l.at)} · ${what}` });
  }

  async function test(w) {
    try {
      const r = await post(`/api/webhooks/${encodeURIComponent(w.id)}/test`);
      msg.replaceChildren(h('p', { class: 'ok' }, `Test event queued for ${w.url}: `, h('code', { class: 'event-id', text: r.event_id || '' })));
    } catch (e) { msg.replaceChildren(errorBox(e)); }
    load();
  }
  async function remove(w) {
    if (!(await confirmDialog(`Delete ${w.url}?`, 'No more events are posted to it.', 'Delete'))) return;
    try { await del('/api/webhooks/' + encodeURIComponent(w.id)); announce('Endpoint deleted.'); } catch (e) { msg.replaceChildren(errorBox(e)); }
    load();
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.replaceChildren();
    const events = boxes.filter((b) => b.checked).map((b) => b.value);
    try {
      const body = { url: url.value.trim(), events };
      if (desc.value.trim()) body.description = desc.value.trim();
      const r = await post('/api/webhooks', body);
      url.value = '';
      desc.value = '';
      // The only time the secret is shown: it is in this answer and nowhere else.
      msg.replaceChildren(h('div', { class: 'ok secret-once', role: 'status' },
        h('p', { text: 'Endpoint added. Store its signing secret now: it is not shown again.' }),
        h('code', { class: 'secret', text: r.secret || '' })));
      load();
    } catch (err) { msg.replaceChildren(errorBox(err)); }
  });
  await load();
}
