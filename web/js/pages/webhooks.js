// Webhooks (admin): the endpoints minicrm posts events to ({id, url, events, status}), a form
// to add one (the signing secret is shown once, as the API answers it), send a test event,
// delete. On a server without /api/webhooks (404) the page says so instead.

import { get, post, del } from '../api.js';
import { h, field, page, table, errorBox, confirmDialog, announce } from '../dom.js';
import { notAvailable } from './suppressions.js';

const EVENTS = ['campaign.started', 'campaign.completed', 'campaign.paused', 'campaign.cancelled',
  'message.failed', 'message.bounced', 'contact.unsubscribed', 'contact.complained'];

export async function render(main) {
  const box = h('div', {});
  const url = h('input', { type: 'url', name: 'url', required: true, placeholder: 'https://example.com/hooks/minicrm', autocomplete: 'off' });
  const boxes = EVENTS.map((ev, i) => h('input', { type: 'checkbox', id: 'ev-' + i, value: ev, checked: true }));
  const msg = h('div', { class: 'formmsg', 'aria-live': 'polite' });
  const form = h('form', { class: 'card', 'aria-labelledby': 'h-add' }, h('h2', { id: 'h-add', text: 'Add an endpoint' }),
    field('URL', url),
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
    const rows = Array.isArray(r) ? r : r.webhooks || r.items || [];
    box.replaceChildren(table('Webhook endpoints', [
      { label: 'URL', get: (w) => h('code', { text: w.url }) },
      { label: 'Events', get: (w) => (w.events || []).join(', ') },
      { label: 'Status', get: (w) => w.status || '—' },
      { label: 'Actions', get: (w) => h('span', { class: 'actions' },
        h('button', { type: 'button', 'aria-label': `Send a test event to ${w.url}`, onclick: () => test(w) }, 'Test'),
        h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${w.url}`, onclick: () => remove(w) }, 'Delete')) },
    ], rows, 'No webhook endpoints.'));
  }

  async function test(w) {
    try { await post(`/api/webhooks/${encodeURIComponent(w.id)}/test`); msg.replaceChildren(h('p', { class: 'ok', text: `Test event queued for ${w.url}.` })); } catch (e) { msg.replaceChildren(errorBox(e)); }
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
      const r = await post('/api/webhooks', { url: url.value.trim(), events });
      url.value = '';
      const secret = r.secret || (r.webhook && r.webhook.secret);
      msg.replaceChildren(h('p', { class: 'ok' }, 'Endpoint added.', secret ? [' Signing secret (shown once): ', h('code', { class: 'secret', text: secret })] : null));
      load();
    } catch (err) { msg.replaceChildren(errorBox(err)); }
  });
  await load();
}
