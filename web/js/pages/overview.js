// Overview: campaigns with live progress bars and counters, messages/s over the last 10
// minutes, queue depths and system health (/readyz). Live figures come from the shared event
// stream (sse.js); the campaign list itself is read once per page shown (paged, 20 a page).

import { get, qs } from '../api.js';
import { h, page, table, pager, badge, fmtDate, fmtNum, idOf, errorBox } from '../dom.js';
import { lineChart } from '../chart.js';
import { progressBar, counterList } from '../campaigns.js';
import * as sse from '../sse.js';

const LIMIT = 20;

export async function render(main, ctx) {
  const health = h('section', { class: 'card', 'aria-labelledby': 'h-health' }, h('h2', { id: 'h-health', text: 'System health' }));
  const rate = h('section', { class: 'card span2', 'aria-labelledby': 'h-rate' }, h('h2', { id: 'h-rate', text: 'Messages per second' }));
  const queues = h('section', { class: 'card wide', 'aria-labelledby': 'h-queues' }, h('h2', { id: 'h-queues', text: 'Queue depths' }));
  const camps = h('section', { class: 'card wide', 'aria-labelledby': 'h-camps' },
    h('div', { class: 'row' }, h('h2', { id: 'h-camps', text: 'Campaigns' }),
      h('a', { class: 'button primary', href: '#/campaigns/new' }, 'New campaign')));
  const campBody = h('div', {});
  camps.append(campBody);
  page(main, 'Overview', h('div', { class: 'grid' }, camps, rate, health, queues));

  let list = [];
  let pageNo = Number(ctx.query.get('page')) || 1;

  // Health: /readyz once (it answers 503 with the same body when something is down), then the
  // stream's own view of Redis and MongoDB with every event.
  const healthBody = h('div', {});
  health.append(healthBody);
  function drawHealth(body) {
    healthBody.replaceChildren(h('dl', { class: 'health' },
      ['redis', 'mongodb'].map((k) => h('div', {}, h('dt', { text: k === 'mongodb' ? 'MongoDB' : 'Redis' }),
        h('dd', { class: body[k] === 'ok' ? 'ok' : 'bad', text: body[k] === 'ok' ? 'up' : 'down' })))),
      h('p', { class: body.status === 'ready' ? 'ok' : 'bad', text: body.status === 'ready' ? 'Ready' : body.error || 'Not ready' }));
  }
  fetch('/readyz', { credentials: 'same-origin' }).then((r) => r.json()).then(drawHealth)
    .catch((e) => healthBody.replaceChildren(errorBox(e)));

  function drawCampaigns() {
    const live = new Map((sse.latest.campaigns || []).map((c) => [idOf(c), c]));
    const rows = list.map((c) => ({ ...c, ...(live.get(idOf(c)) || {}) }));
    campBody.replaceChildren(
      table('Campaigns, newest first', [
        { label: 'Name', get: (c) => h('a', { href: '#/campaigns/' + idOf(c) }, c.name) },
        { label: 'State', get: (c) => badge(c.status) },
        { label: 'Progress', get: (c) => progressBar(c, `Progress of ${c.name}`) },
        { label: 'Counters', get: (c) => counterList(c) },
        { label: 'Created', get: (c) => fmtDate(c.createdAt) },
      ], rows, 'No campaigns yet: create one.'),
      pager({ page: pageNo, hasNext: list.length === LIMIT, label: 'Campaign pages' }, (p) => { pageNo = p; load(); }));
  }

  async function load() {
    try {
      list = await get('/api/campaigns' + qs({ limit: LIMIT, page: pageNo }));
      drawCampaigns();
    } catch (e) {
      campBody.replaceChildren(errorBox(e));
    }
  }

  function drawQueues(latest) {
    const qsl = latest.queues;
    const body = [];
    if (!qsl) body.push(h('p', { class: 'muted', text: ctx.user.role === 'admin' ? 'Waiting for the first figures…' : 'Queue figures are for admins.' }));
    else body.push(table('Jobs per queue', [
      { label: 'Queue', get: (q) => q.name },
      { label: 'Ready', get: (q) => fmtNum(q.ready) },
      { label: 'In flight', get: (q) => fmtNum(q.inflight) },
      { label: 'Delayed', get: (q) => fmtNum(q.delayed) },
      { label: 'Dead', get: (q) => (q.dead ? h('a', { href: '#/queues', class: 'bad' }, fmtNum(q.dead)) : '0') },
    ], qsl));
    queues.replaceChildren(queues.firstChild, ...body);
    rate.replaceChildren(rate.firstChild, lineChart({
      title: 'Messages per second, last 10 minutes',
      series: [{ name: 'messages/s', points: sse.rateSeries() }],
      windowMs: 10 * 60 * 1000,
      width: 760,
      yLabel: 'messages whose receipt came back, sent or failed',
    }));
  }

  let lastCampRefresh = 0;
  const unsub = sse.subscribe((latest) => {
    drawQueues(latest);
    if (latest.health) {
      const ok = latest.health.redis === 'ok' && latest.health.mongodb === 'ok';
      drawHealth({ ...latest.health, status: ok ? 'ready' : 'unavailable', error: ok ? '' : 'A dependency is down' });
    }
    if (list.length) drawCampaigns();
    // A campaign the stream knows and this page does not: a new one, read the list again.
    if (latest.campaigns && pageNo === 1 && Date.now() - lastCampRefresh > 5000) {
      const known = new Set(list.map(idOf));
      if (latest.campaigns.some((c) => !known.has(idOf(c)))) { lastCampRefresh = Date.now(); load(); }
    }
  });
  drawQueues(sse.latest);
  await load();
  return unsub;
}
