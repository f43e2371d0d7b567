// New campaign: the rule builder (every rule of lib/rules.c with its bounds; an empty field is
// a rule not used), the live audience preview (POST /api/campaigns/preview, 400 ms after the
// last change), suggested tags (POST /api/campaigns/suggest-tags; the AI's when it answers),
// the message template with its rendering for a sample customer, an optional schedule
// (send_at) and rate limit (rate_per_s, sent only when filled). Submitting creates the campaign
// with an Idempotency-Key made for this form, so a double submit creates one campaign.

import { get, post, request, qs } from '../api.js';
import { h, field, page, errorBox, fmtNum, announce } from '../dom.js';
import { DEFAULT_TEMPLATE, render as renderTemplate } from '../template.js';

// lib/rules.c: RULES_MAX_SPEND 1e12, RULES_MAX_DAYS 36500; recent_signup from 1.
export const RULES = [
  { key: 'min_spend', label: 'Minimum total spend', type: 'number', min: 0, max: 1e12, step: 'any', hint: 'Customers who spent at least this much in all (0 – 1,000,000,000,000).' },
  { key: 'max_spend', label: 'Maximum total spend', type: 'number', min: 0, max: 1e12, step: 'any', hint: 'At most this much (not below the minimum).' },
  { key: 'inactive_days', label: 'Inactive for at least (days)', type: 'number', min: 0, max: 36500, step: 1, hint: 'No visit in this many days (0 – 36500).' },
  { key: 'recent_signup', label: 'Signed up within (days)', type: 'number', min: 1, max: 36500, step: 1, hint: 'Customers created in the last N days (1 – 36500).' },
  { key: 'email_domain', label: 'Email domain', type: 'text', hint: 'Only addresses at this domain, e.g. example.com.' },
];

const MAX_TAGS = 5;

function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2);
}

export async function render(main, ctx) {
  let idemKey = newKey();
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: 200, autocomplete: 'off' });
  const inputs = {};
  const ruleFields = RULES.map((r) => {
    const el = h('input', { type: r.type, name: r.key, min: r.min, max: r.max, step: r.step, inputmode: r.type === 'number' ? 'decimal' : null, autocomplete: 'off' });
    inputs[r.key] = el;
    return field(r.label, el, r.hint);
  });
  const audience = h('output', { class: 'big', 'aria-live': 'polite', text: '…' });
  const audienceMsg = h('div', {});
  const tagsBox = h('div', { class: 'tags', role: 'group', 'aria-label': 'Suggested tags' });
  const extraTags = h('input', { type: 'text', name: 'tags', autocomplete: 'off' });
  const message = h('textarea', { name: 'message', rows: 3, placeholder: DEFAULT_TEMPLATE });
  const preview = h('blockquote', { class: 'preview', 'aria-live': 'polite' });
  const previewWho = h('p', { class: 'muted' });
  const schedule = h('input', { type: 'checkbox', name: 'schedule' });
  const sendAt = h('input', { type: 'datetime-local', name: 'send_at', disabled: true });
  // POST /api/campaigns: a positive number, at most 1,000,000 (RATE_PER_S_MAX).
  const rate = h('input', { type: 'number', name: 'rate_per_s', min: 0.001, max: 1000000, step: 'any', inputmode: 'decimal' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create campaign');
  const formMsg = h('div', { class: 'formmsg' });

  const form = h('form', { class: 'newcampaign', novalidate: true },
    h('section', { class: 'card' }, h('h2', { text: 'Campaign' }), field('Name', name, 'Words like VIP, sale or Diwali add tags of their own.')),
    h('fieldset', { class: 'card' }, h('legend', { text: 'Audience rules' }),
      h('p', { class: 'muted', text: 'Leave a rule empty to not use it; no rules at all means every customer.' }),
      h('div', { class: 'rules' }, ruleFields),
      h('div', { class: 'audience' }, h('span', { id: 'aud-label', text: 'Audience: ' }), audience, ' customers', audienceMsg)),
    h('fieldset', { class: 'card' }, h('legend', { text: 'Tags' }), tagsBox,
      field('More tags (comma separated)', extraTags, `At most ${MAX_TAGS} tags of your own in all.`)),
    h('fieldset', { class: 'card' }, h('legend', { text: 'Message' }),
      field('Message template', message, 'Placeholders: {{name}}, {{email}}, {{total_spend}}. Empty: the default text.'),
      h('div', {}, h('h3', { text: 'Preview' }), previewWho, preview)),
    h('fieldset', { class: 'card' }, h('legend', { text: 'Delivery' }),
      h('div', { class: 'check' }, schedule, h('label', { for: (schedule.id = 'f-schedule'), text: 'Schedule for later' })),
      field('Send at (your local time)', sendAt, 'Up to a year ahead.'),
      field('Rate limit (messages per second)', rate, 'This campaign\'s own limit, up to 1,000,000; empty: only the vendor\'s limit.')),
    h('div', { class: 'actions' }, submit, h('a', { href: '#/', class: 'button' }, 'Back'), formMsg));
  page(main, 'New campaign', form);
  name.focus();

  // ---- rules, audience preview, tags ----
  function rules() {
    const out = {};
    for (const r of RULES) {
      const v = inputs[r.key].value.trim();
      if (v === '') continue;
      out[r.key] = r.type === 'number' ? Number(v) : v;
    }
    return out;
  }

  let timer = null;
  let seq = 0;
  let suggested = [];
  const chosen = new Set();
  let aiPoll = null;

  function drawTags() {
    tagsBox.replaceChildren(suggested.length
      ? h('p', { class: 'muted', text: 'Suggested (tick to add):' })
      : h('p', { class: 'muted', text: 'Type a name or rules to get suggestions.' }),
    ...suggested.map((t, i) => {
      const id = 'tag-' + i;
      const cb = h('input', { type: 'checkbox', id, value: t, checked: chosen.has(t), onchange: () => { if (cb.checked) chosen.add(t); else chosen.delete(t); } });
      return h('span', { class: 'tag' }, cb, h('label', { for: id, text: t }));
    }));
  }

  async function refresh() {
    const my = ++seq;
    const r = rules();
    try {
      const p = await post('/api/campaigns/preview', { rules: r });
      if (my !== seq) return;
      audience.textContent = fmtNum(p.audience_size);
      audienceMsg.replaceChildren();
    } catch (e) {
      if (my !== seq) return;
      audience.textContent = '—';
      audienceMsg.replaceChildren(errorBox(e));
      return;
    }
    const n = name.value.trim();
    try {
      const s = await post('/api/campaigns/suggest-tags', { name: n || 'campaign', rules: r });
      if (my !== seq) return;
      setSuggested(s);
      clearTimeout(aiPoll);
      if (s.ai === 'queued' && s.id) pollAi(s.id, my, 0);
    } catch { /* suggestions are optional */ }
  }

  function setSuggested(s) {
    const all = [...(s.tags || []), ...(s.ai_tags || [])];
    suggested = [...new Set(all)];
    drawTags();
  }

  function pollAi(id, my, n) {
    if (n >= 15) return;
    aiPoll = setTimeout(async () => {
      if (my !== seq) return;
      try {
        const s = await get('/api/campaigns/suggest-tags/' + encodeURIComponent(id));
        if (my !== seq) return;
        if (s.status === 'done') setSuggested({ tags: suggested, ai_tags: s.tags });
        else if (s.status === 'queued') pollAi(id, my, n + 1);
      } catch { /* expired */ }
    }, 2000);
  }

  function schedule400() { clearTimeout(timer); timer = setTimeout(refresh, 400); }
  for (const el of [name, ...Object.values(inputs)]) el.addEventListener('input', schedule400);
  refresh();

  // ---- message preview ----
  let sample = { name: 'Asha', email: 'asha@example.com', total_spend: 5200 };
  let sampleReal = false;
  function drawPreview() {
    const r = renderTemplate(message.value || DEFAULT_TEMPLATE, sample);
    previewWho.textContent = `For ${sampleReal ? 'your customer' : 'a sample customer'} ${sample.name} <${sample.email}>, total spend ${fmtNum(sample.total_spend)}:`;
    preview.classList.toggle('invalid', !!r.error);
    preview.textContent = r.error || r.text;
    message.setAttribute('aria-invalid', r.error ? 'true' : 'false');
  }
  message.addEventListener('input', drawPreview);
  drawPreview();
  get('/customers' + qs({ limit: 1 })).then((list) => {
    if (Array.isArray(list) && list[0]) { sample = list[0]; sampleReal = true; drawPreview(); }
  }).catch(() => {});

  schedule.addEventListener('change', () => {
    sendAt.disabled = !schedule.checked;
    if (schedule.checked && !sendAt.value) {
      const d = new Date(Date.now() + 3600e3);
      d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
      sendAt.value = d.toISOString().slice(0, 16);
    }
    if (schedule.checked) sendAt.focus();
  });

  // ---- submit ----
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    formMsg.replaceChildren();
    const body = { name: name.value.trim(), rules: rules() };
    if (!body.name) { formMsg.replaceChildren(errorBox('name: a campaign needs a name')); name.focus(); return; }
    if (message.value.trim()) {
      const r = renderTemplate(message.value, sample);
      if (r.error) { formMsg.replaceChildren(errorBox(r.error)); message.focus(); return; }
      body.message = message.value;
    }
    const tags = [...chosen, ...extraTags.value.split(',').map((t) => t.trim()).filter(Boolean)];
    if (tags.length > MAX_TAGS) { formMsg.replaceChildren(errorBox(`selectedTags: at most ${MAX_TAGS} tags`)); extraTags.focus(); return; }
    if (tags.length) body.selectedTags = [...new Set(tags)];
    if (schedule.checked) {
      const d = new Date(sendAt.value);
      if (!sendAt.value || isNaN(d)) { formMsg.replaceChildren(errorBox('send_at: pick a date and time')); sendAt.focus(); return; }
      body.send_at = d.toISOString();
    }
    if (rate.value.trim() !== '') body.rate_per_s = Number(rate.value);
    submit.disabled = true;
    try {
      const res = await request('POST', '/api/campaigns', body, { headers: { 'Idempotency-Key': idemKey } });
      const c = res.json.campaign;
      announce(`Campaign ${c.name} created for ${fmtNum(res.json.logs_count)} customers.`);
      ctx.go('/campaigns/' + (c._id.$oid || c._id));
    } catch (e) {
      // A 409 with the same key means "in progress"; any other answer lets the user fix and
      // send a new request.
      if (e.status !== 409) idemKey = newKey();
      formMsg.replaceChildren(errorBox(e));
    } finally {
      submit.disabled = false;
    }
  });

  return () => { clearTimeout(timer); clearTimeout(aiPoll); seq++; };
}
