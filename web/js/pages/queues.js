// Queues (admin): ready, held, in flight, delayed and dead per queue (live, from the event
// stream), a chart of the work waiting per queue over the last 10 minutes, and the dead
// letters of a chosen queue with their error: requeue or purge one, or all (each after a
// confirmation), through /api/queues/:name/dead.

import { get, post, qs } from '../api.js';
import { h, field, page, table, pager, fmtNum, fmtDate, errorBox, confirmDialog, announce } from '../dom.js';
import { lineChart } from '../chart.js';
import * as sse from '../sse.js';

const LIMIT = 20;
const NAMES = ['campaigns', 'sends', 'receipts', 'ai', 'priority', 'priority-receipts', 'receipt-events', 'events', 'webhooks'];

export async function render(main, ctx) {
  const figures = h('div', {});
  const chart = h('div', {});
  const pick = h('select', { name: 'queue' }, NAMES.map((n) => h('option', { value: n }, n)));
  const deadBox = h('div', {});
  const deadMsg = h('div', { class: 'formmsg', 'aria-live': 'polite' });
  const bulk = h('div', { class: 'actions' });
  page(main, 'Queues',
    h('div', { class: 'grid' },
      h('section', { class: 'card wide', 'aria-labelledby': 'h-fig' }, h('h2', { id: 'h-fig', text: 'Jobs per queue' }), figures),
      h('section', { class: 'card wide', 'aria-labelledby': 'h-chart' }, h('h2', { id: 'h-chart', text: 'Waiting work, last 10 minutes' }), chart),
      h('section', { class: 'card wide', 'aria-labelledby': 'h-dead' },
        h('div', { class: 'row' }, h('h2', { id: 'h-dead', text: 'Dead letters' }), field('Queue', pick)),
        bulk, deadMsg, deadBox)));
  if (ctx.query.get('queue') && NAMES.includes(ctx.query.get('queue'))) pick.value = ctx.query.get('queue');

  let lastDead = null;
  function draw(latest) {
    const qsl = latest.queues;
    if (!qsl) { figures.replaceChildren(h('p', { class: 'muted', text: 'Waiting for the first figures…' })); return; }
    figures.replaceChildren(table('Jobs per queue', [
      { label: 'Queue', get: (q) => q.name },
      { label: 'Ready', get: (q) => fmtNum(q.ready) },
      { label: 'Held', get: (q) => (q.held === undefined ? '—' : fmtNum(q.held)) },
      { label: 'In flight', get: (q) => fmtNum(q.inflight) },
      { label: 'Delayed', get: (q) => fmtNum(q.delayed) },
      { label: 'Dead', get: (q) => (q.dead ? h('button', { type: 'button', class: 'link bad', 'aria-label': `Show the ${q.dead} dead letters of ${q.name}`, onclick: () => { pick.value = q.name; deadPage = 1; loadDead(); } }, fmtNum(q.dead)) : '0') },
      { label: 'Consumers alive', get: (q) => (q.consumers === undefined ? '—' : `${fmtNum(q.alive)} / ${fmtNum(q.consumers)}`) },
      { label: 'Per second (1 min)', get: (q) => (q.rate_1m === undefined ? '—' : fmtNum(q.rate_1m)) },
    ], qsl));
    chart.replaceChildren(lineChart({
      title: 'Ready + in flight + delayed + held, per queue',
      series: NAMES.map((n) => ({ name: n, points: sse.history.map((s) => {
        const q = (s.queues || []).find((x) => x.name === n) || {};
        return { t: s.t, v: (q.ready || 0) + (q.inflight || 0) + (q.delayed || 0) + (q.held || 0) };
      }) })),
      windowMs: 10 * 60 * 1000,
      width: 1160,
      height: 220,
    }));
    // A new dead letter in the queue shown: read the list again.
    const cur = qsl.find((q) => q.name === pick.value);
    if (cur && lastDead !== null && cur.dead !== lastDead) loadDead();
    if (cur) lastDead = cur.dead;
  }

  let deadPage = 1;
  let seq = 0;
  async function loadDead() {
    const my = ++seq;
    const name = pick.value;
    try {
      const r = await get(`/api/queues/${encodeURIComponent(name)}/dead` + qs({ limit: LIMIT, page: deadPage }));
      if (my !== seq) return;
      lastDead = r.total;
      bulk.replaceChildren(...(r.total
        ? [h('button', { type: 'button', onclick: () => act(name, 'all', 'requeue', r.total) }, `Requeue all ${r.total}`),
          h('button', { type: 'button', class: 'danger', onclick: () => act(name, 'all', 'purge', r.total) }, `Purge all ${r.total}`)]
        : []));
      deadBox.replaceChildren(...[
        table(`Dead letters of ${name}, newest first (${fmtNum(r.total)} in all)`, [
          { label: '#', get: (d) => String(d.index) },
          { label: 'Failed', get: (d) => fmtDate(d.failed_at) },
          { label: 'Attempts', get: (d) => fmtNum(d.attempts) },
          { label: 'Error', get: (d) => h('span', { class: 'bad', text: d.error || '—' }) },
          { label: 'Job', get: (d) => h('code', { class: 'job', text: typeof d.job === 'string' ? d.job : JSON.stringify(d.job) }) },
          { label: 'Actions', get: (d) => h('span', { class: 'actions' },
            h('button', { type: 'button', 'aria-label': `Requeue dead letter ${d.index}`, onclick: () => act(name, d.index, 'requeue', 1) }, 'Requeue'),
            h('button', { type: 'button', class: 'danger', 'aria-label': `Purge dead letter ${d.index}`, onclick: () => act(name, d.index, 'purge', 1) }, 'Purge')) },
        ], r.dead, `No dead letters in ${name}.`),
        r.total > LIMIT ? pager({ page: deadPage, pages: Math.ceil(r.total / LIMIT), hasNext: deadPage * LIMIT < r.total, label: 'Dead letter pages' }, (p) => { deadPage = p; loadDead(); }) : null].filter(Boolean));
    } catch (e) {
      if (my === seq) deadBox.replaceChildren(errorBox(e));
    }
  }

  async function act(name, index, what, n) {
    const all = index === 'all';
    const title = what === 'requeue'
      ? (all ? `Requeue all ${n} dead letters of ${name}?` : `Requeue dead letter ${index} of ${name}?`)
      : (all ? `Purge all ${n} dead letters of ${name}?` : `Purge dead letter ${index} of ${name}?`);
    const text = what === 'requeue'
      ? 'The job goes back to the ready list and is tried again.'
      : 'The dead letter is deleted for good; its job will not run.';
    if (!(await confirmDialog(title, text, what === 'requeue' ? 'Requeue' : 'Purge'))) return;
    deadMsg.replaceChildren();
    try {
      const r = await post(`/api/queues/${encodeURIComponent(name)}/dead/${index}/${what}`);
      const k = what === 'requeue' ? r.requeued : r.purged;
      const msg = `${what === 'requeue' ? 'Requeued' : 'Purged'} ${k} dead letter${k === 1 ? '' : 's'} of ${name}.`;
      deadMsg.replaceChildren(h('p', { class: 'ok', text: msg }));
      announce(msg);
    } catch (e) {
      deadMsg.replaceChildren(errorBox(e.status === 404 ? 'That dead letter is gone already (the list changed); here is the list again.' : e));
    }
    deadPage = 1;
    loadDead();
  }

  pick.addEventListener('change', () => { deadPage = 1; deadMsg.replaceChildren(); loadDead(); });
  const unsub = sse.subscribe(draw);
  draw(sse.latest);
  // The first figures without waiting for the stream's next tick.
  if (!sse.latest.queues) get('/api/queues').then((r) => { if (!sse.latest.queues) draw({ queues: r.queues }); }).catch(() => {});
  await loadDead();
  return unsub;
}
