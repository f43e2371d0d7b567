// API keys (admin): every key (prefix, name, role, created, last used, revoked), a form to
// create one (the key is shown once, as the API answers it, and kept nowhere), revoke.

import { get, post, del } from '../api.js';
import { h, field, page, table, fmtDate, badge, errorBox, confirmDialog, announce } from '../dom.js';

export async function render(main) {
  const box = h('div', {});
  const name = h('input', { type: 'text', name: 'name', autocomplete: 'off' });
  const role = h('select', { name: 'role' }, h('option', { value: 'staff' }, 'staff'), h('option', { value: 'admin' }, 'admin'));
  const msg = h('div', { class: 'formmsg', 'aria-live': 'polite' });
  const form = h('form', { class: 'card', 'aria-labelledby': 'h-add' }, h('h2', { id: 'h-add', text: 'Create a key' }),
    h('div', { class: 'inline' }, field('Name', name), field('Role', role)),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create key'), msg));
  page(main, 'API keys', h('section', { class: 'card' }, box), form);

  const kid = (k) => k.id || (k._id && (k._id.$oid || k._id));
  async function load() {
    try {
      const r = await get('/api/keys');
      const rows = Array.isArray(r) ? r : r.keys || r.api_keys || [];
      box.replaceChildren(table('API keys', [
        { label: 'Prefix', get: (k) => h('code', { text: k.prefix || '—' }) },
        { label: 'Name', get: (k) => k.name || '—' },
        { label: 'Role', get: (k) => k.role },
        { label: 'Created', get: (k) => fmtDate(k.createdAt) },
        { label: 'By', get: (k) => k.created_by || '—' },
        { label: 'Last used', get: (k) => fmtDate(k.lastUsedAt) },
        { label: 'State', get: (k) => badge(k.revoked ? 'REVOKED' : 'ACTIVE') },
        { label: 'Actions', get: (k) => (k.revoked ? '' : h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke key ${k.prefix || kid(k)}`, onclick: () => revoke(k) }, 'Revoke')) },
      ], rows, 'No keys.'));
    } catch (e) { box.replaceChildren(errorBox(e)); }
  }
  async function revoke(k) {
    if (!(await confirmDialog(`Revoke key ${k.prefix || ''}?`, 'Programs and sessions signed in with it stop working.', 'Revoke'))) return;
    try { await del('/api/keys/' + encodeURIComponent(kid(k))); announce('Key revoked.'); } catch (e) { msg.replaceChildren(errorBox(e)); }
    load();
  }
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    msg.replaceChildren();
    try {
      const r = await post('/api/keys', { role: role.value, name: name.value.trim() });
      name.value = '';
      msg.replaceChildren(h('p', { class: 'ok' }, 'Key created; copy it now, it is not shown again: ', h('code', { class: 'secret', text: r.key })));
      load();
    } catch (err) { msg.replaceChildren(errorBox(err)); }
  });
  await load();
}
