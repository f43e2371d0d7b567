// Campaign: its state, counters by status (only those the API gives), progress over time (a
// chart of the counters while the page is open), its logs filtered by status (paged), and the
// pause / resume / cancel buttons the move table allows from its state (campaigns.js), and for
// a SCHEDULED campaign a new send time (POST /api/campaigns/:id/reschedule {send_at}).
// Live figures come from the event stream; while the campaign is not final and the stream has
// nothing about it, the page reads GET /api/campaigns/:id every 3 s instead.

import { get, post, qs } from '../api.js';
import { h, page, table, pager, badge, fmtDate, fmtNum, errorBox, confirmDialog, announce, field } from '../dom.js';
import { lineChart } from '../chart.js';
import { progressBar, counterList, counters, legalMoves } from '../campaigns.js';
import * as sse from '../sse.js';

const FINAL = ['COMPLETED', 'CANCELLED'];
const LOG_LIMIT = 25;
const LOG_STATUSES = ['', 'PENDING', 'SENT', 'FAILED', 'CANCELLED'];

export async function render(main, ctx) {
  const id = ctx.params.id;
  let camp;
  try {
    camp = await get('/api/campaigns/' + encodeURIComponent(id));
  } catch (e) {
    page(main, 'Campaign', errorBox(e.status === 404 || e.status === 400 ? 'No such campaign.' : e));
    return;
  }
  const state = h('p', { class: 'state' });
  const moves = h('div', { class: 'actions moves', role: 'group', 'aria-label': 'Campaign actions' });
  const moveMsg = h('div', { class: 'formmsg', 'aria-live': 'polite' });
  const resched = h('div', {});
  const bar = h('div', {});
  const counts = h('div', {});
  const chart = h('div', {});
  const details = h('dl', { class: 'details' });
  const logsBox = h('div', {});
  const filter = h('select', { name: 'status' }, LOG_STATUSES.map((s) => h('option', { value: s }, s || 'All')));
  const series = { sent: [], failed: [], pending: [] };

  const h1 = page(main, camp.name,
    h('div', { class: 'grid' },
      h('section', { class: 'card span2', 'aria-labelledby': 'h-state' },
        h('h2', { id: 'h-state', text: 'State' }), state, bar, counts, moves, resched, moveMsg),
      h('section', { class: 'card', 'aria-labelledby': 'h-details' }, h('h2', { id: 'h-details', text: 'Details' }), details),
      h('section', { class: 'card wide', 'aria-labelledby': 'h-time' }, h('h2', { id: 'h-time', text: 'Progress over time' }), chart),
      h('section', { class: 'card wide', 'aria-labelledby': 'h-logs' },
        h('div', { class: 'row' }, h('h2', { id: 'h-logs', text: 'Messages' }), field('Status', filter)),
        logsBox)));
  h1.classList.add('camp-title');

  function sample(c) {
    const k = counters(c);
    const t = Date.now();
    for (const s of Object.keys(series)) if (typeof k[s] === 'number') series[s].push({ t, v: k[s] });
  }

  function draw() {
    state.replaceChildren('State: ', badge(camp.status));
    if (camp.send_at) state.append(h('span', { class: 'muted', text: ` · sends at ${fmtDate(camp.send_at)}` }));
    bar.replaceChildren(progressBar(camp, 'Campaign progress'));
    counts.replaceChildren(counterList(camp));
    const legal = legalMoves(camp.status, ctx.user.role);
    moves.replaceChildren(...legal.map((m) => h('button', { type: 'button', class: m.name === 'cancel' ? 'danger' : 'primary', 'data-move': m.name, onclick: () => doMove(m) }, m.label)));
    if (!legal.length) moves.append(h('span', { class: 'muted', text: FINAL.includes(camp.status) ? 'This campaign is finished.' : 'No action available in this state.' }));
    drawReschedule();
    chart.replaceChildren(camp.status === 'SCHEDULED'
      ? h('p', { class: 'muted', text: `Nothing is sent before ${fmtDate(camp.send_at)}.` })
      : lineChart({
        title: 'Messages by status',
        width: 1160,
        series: Object.entries(series).filter(([, p]) => p.length).map(([name, points]) => ({ name, points })),
      }));
    details.replaceChildren(...[
      ['Audience', camp.status === 'SCHEDULED' && !camp.audience_size ? 'counted when it starts (rules judged at send time)' : fmtNum(camp.audience_size)],
      ['Rules', Object.keys(camp.rules || {}).length ? JSON.stringify(camp.rules) : 'none (every customer)'],
      ['Tags', (camp.tags || []).join(', ') || '—'],
      ['Message', camp.message || '(default text)'],
      ['Rate limit', camp.rate_per_s ? camp.rate_per_s + ' / s' : null],
      ['Created', fmtDate(camp.createdAt)],
      ['Updated', fmtDate(camp.updatedAt)],
    ].filter(([, v]) => v !== null).map(([k, v]) => h('div', {}, h('dt', { text: k }), h('dd', { text: v }))));
  }

  // Reschedule (SCHEDULED only): the form stays while the campaign is SCHEDULED, so a live
  // redraw keeps what the user typed.
  let reschedForm = null;
  function drawReschedule() {
    if (camp.status !== 'SCHEDULED') { reschedForm = null; resched.replaceChildren(); return; }
    if (reschedForm) return;
    const when = h('input', { type: 'datetime-local', name: 'send_at', required: true });
    const at = Date.parse(camp.send_at && (camp.send_at.$date || camp.send_at));
    const d = new Date(isNaN(at) ? Date.now() + 3600e3 : at);
    d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
    when.value = d.toISOString().slice(0, 16);
    reschedForm = h('form', { class: 'inline reschedule', 'aria-label': 'Reschedule' },
      field('New send time', when), h('button', { type: 'submit', class: 'primary' }, 'Reschedule'));
    reschedForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const t = new Date(when.value);
      if (!when.value || isNaN(t)) { moveMsg.replaceChildren(errorBox('send_at: pick a date and time')); when.focus(); return; }
      try {
        const r = await post(`/api/campaigns/${encodeURIComponent(id)}/reschedule`, { send_at: t.toISOString() });
        camp = { ...camp, ...r };
        moveMsg.replaceChildren();
        announce(`Campaign ${camp.name} now sends at ${fmtDate(camp.send_at)}.`);
      } catch (e) {
        moveMsg.replaceChildren(errorBox(e));
      }
      reschedForm = null;
      await reload();
    });
    resched.replaceChildren(reschedForm);
  }

  async function reload() {
    try {
      camp = await get('/api/campaigns/' + encodeURIComponent(id));
      sample(camp);
      draw();
    } catch (e) {
      moveMsg.replaceChildren(errorBox(e));
    }
  }

  async function doMove(m) {
    if (m.confirm && !(await confirmDialog(`${m.label} “${camp.name}”?`, 'Messages not yet handed to the vendor will not be sent. This cannot be undone.', `${m.label} campaign`))) return;
    moveMsg.replaceChildren(h('span', { class: 'muted', text: `${m.label}…` }));
    for (const b of moves.querySelectorAll('button')) b.disabled = true;
    // Pause answers 503 until the workers acknowledged it: try again for up to ~15 s.
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await post(`/api/campaigns/${encodeURIComponent(id)}/${m.name}`);
        camp = { ...camp, ...r };
        moveMsg.replaceChildren();
        announce(`Campaign ${camp.name} is ${camp.status}.`);
        break;
      } catch (e) {
        if (e.status === 503 && attempt < 15) { await new Promise((res) => setTimeout(res, 1000)); continue; }
        moveMsg.replaceChildren(errorBox(e));
        break;
      }
    }
    await reload();
    const first = moves.querySelector('button');
    if (first) first.focus();
  }

  // ---- logs ----
  let logPage = 1;
  async function loadLogs() {
    try {
      const logs = await get(`/api/campaigns/${encodeURIComponent(id)}/logs` + qs({ limit: LOG_LIMIT, page: logPage, status: filter.value }));
      logsBox.replaceChildren(
        table('Messages of this campaign', [
          { label: 'Customer', get: (l) => (l.customer_id && l.customer_id.name ? h('a', { href: '#/customers/' + (l.customer_id._id.$oid || l.customer_id._id) }, l.customer_id.name) : '—') },
          { label: 'Email', get: (l) => (l.customer_id && l.customer_id.email) || '—' },
          { label: 'Status', get: (l) => badge(l.status) },
          { label: 'Vendor id', get: (l) => l.vendorMsgId || '—' },
          { label: 'Message', get: (l) => h('span', { class: 'msg', text: l.message || '' }) },
          { label: 'Updated', get: (l) => fmtDate(l.updatedAt) },
        ], logs, filter.value ? `No ${filter.value} messages.` : 'No messages yet.'),
        pager({ page: logPage, hasNext: logs.length === LOG_LIMIT, label: 'Message pages' }, (p) => { logPage = p; loadLogs(); }));
    } catch (e) {
      logsBox.replaceChildren(errorBox(e));
    }
  }
  filter.addEventListener('change', () => { logPage = 1; loadLogs(); });

  // The chart starts at the campaign's creation with nothing sent; a finished campaign's
  // figures are drawn at its last update. While the page is open every new figure is added.
  const created = Date.parse(camp.createdAt && (camp.createdAt.$date || camp.createdAt));
  if (!isNaN(created)) for (const s of Object.keys(series)) series[s].push({ t: created, v: 0 });
  const updated = Date.parse(camp.updatedAt && (camp.updatedAt.$date || camp.updatedAt));
  if (FINAL.includes(camp.status) && !isNaN(updated) && updated > created) {
    const k = counters(camp);
    for (const s of Object.keys(series)) if (typeof k[s] === 'number') series[s].push({ t: updated, v: k[s] });
  } else {
    sample(camp);
  }
  draw();
  loadLogs();

  // ---- live ----
  let lastLive = 0;
  let lastLogs = Date.now();
  const unsub = sse.subscribe((latest) => {
    const c = (latest.campaigns || []).find((x) => (x._id && (x._id.$oid || x._id)) === id || x.id === id);
    if (!c) return;
    lastLive = Date.now();
    const before = camp.status;
    const next = { ...camp, ...c };
    delete next.progress; // the stream's counters are the newer figures
    camp = next;
    sample(camp);
    draw();
    if (before !== camp.status || (logPage === 1 && Date.now() - lastLogs > 5000)) { lastLogs = Date.now(); loadLogs(); }
  });
  const poll = setInterval(() => {
    if (!FINAL.includes(camp.status) && Date.now() - lastLive > 3000) {
      const before = camp.status;
      reload().then(() => { if (before !== camp.status) loadLogs(); });
    }
  }, 3000);
  return () => { unsub(); clearInterval(poll); };
}
