// Sign in: "Sign in with an API key" (POST /auth/key exchanges the key for the HttpOnly
// session cookie; the key stays in this form field only, never in storage, and the field is
// cleared at once), and "Sign in with Google" when the server offers it (GET /auth/providers);
// a Google login started here comes back to the dashboard (?return_to=/).

import { get, request } from '../api.js';
import { h, field, page, errorBox } from '../dom.js';

export async function render(main, ctx) {
  let google = false;
  try {
    google = !!(await get('/auth/providers')).google;
  } catch { /* a server without the route: API keys only */ }
  const key = h('input', { type: 'password', name: 'key', autocomplete: 'off', required: true, spellcheck: 'false' });
  const msg = h('div', { class: 'formmsg' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'signin-key' },
    h('h2', { id: 'signin-key', text: 'Sign in with an API key' }),
    field('API key', key, 'An admin or staff key (minicrm keys create). It is exchanged for a session and not kept.'),
    submit, msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.replaceChildren();
    submit.disabled = true;
    const value = key.value.trim();
    key.value = '';
    try {
      await request('POST', '/auth/key', { key: value }, { allow401: true });
      const u = await ctx.refreshUser();
      if (!u) throw new Error('Signed in, but the session was not accepted; are cookies blocked?');
      ctx.go('/');
    } catch (e) {
      msg.replaceChildren(errorBox(e.status === 401 ? 'That key is not valid (or was revoked).' : e));
      key.focus();
    } finally {
      submit.disabled = false;
    }
  });
  const parts = [h('p', { class: 'lead', text: 'The dashboard of minicrm: campaigns, queues, customers.' }), form];
  if (google)
    parts.push(h('div', { class: 'card narrow' }, h('h2', { text: 'Google' }),
      h('a', { class: 'button', href: '/auth/google?return_to=/' }, 'Sign in with Google')));
  page(main, 'Sign in', ...parts);
  key.focus();
}
