// Users (admin): the people who signed in with Google, with their role and logins.

import { get } from '../api.js';
import { h, page, table, fmtDate, errorBox } from '../dom.js';

export async function render(main) {
  const box = h('div', {});
  page(main, 'Users', h('section', { class: 'card' }, box));
  try {
    const r = await get('/api/users');
    const rows = Array.isArray(r) ? r : r.users || [];
    box.replaceChildren(table('Users', [
      { label: 'Name', get: (u) => u.displayName || '—' },
      { label: 'Email', get: (u) => u.email || '—' },
      { label: 'Role', get: (u) => u.role || '—' },
      { label: 'First login', get: (u) => fmtDate(u.firstLogin) },
      { label: 'Last login', get: (u) => fmtDate(u.lastLogin) },
    ], rows, 'No one has signed in with Google yet (API keys are listed under API keys).'));
  } catch (e) { box.replaceChildren(errorBox(e)); }
}
