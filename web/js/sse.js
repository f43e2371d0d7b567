// sse: the one live connection of the dashboard, GET /api/events (Server-Sent Events: campaign
// progress and queue figures about once a second). One EventSource per tab, shared by every
// page; pages subscribe and unsubscribe as they come and go.
//
// Reconnection: the browser re-opens a dropped stream by itself; when the server refused the
// stream (EventSource gives up: readyState CLOSED, e.g. a 503 during a restart) we open it
// again after 1, 2, 4 ... 30 s. If the stream never opened at all (a server without
// /api/events), the same figures are read every 5 s from /api/queues and /api/campaigns instead.
//
// The first event of a stream ("history") is {"ts", "step_ms": 1000, "messages": [600 figures]}:
// messages per second over the last 10 minutes as the API counted them (api/events.c), so the
// overview's chart is full as soon as the page opens; each stream (a reconnection too) brings
// a newer one. The data of every later event ("tick") is JSON: {"ts", "campaigns": [campaigns with their counters],
// "queues": [figures as GET /api/queues], "held": held sends, "redis", "mongodb"}. The stream
// sends an event only when the figures changed, so an idle system sends nothing.
// Samples of the last 10 minutes are kept here (not per page), so the overview's messages/s
// chart keeps its history while the user visits other pages.

import { get } from './api.js';

const WINDOW_MS = 10 * 60 * 1000;
const subs = new Set();
const statusSubs = new Set();
let es = null;
let opened = false;
let backoff = 1000;
let timer = null;
let pollTimer = null;
let state = 'idle'; // idle | connecting | live | retrying | polling
export const latest = { campaigns: null, queues: null, t: 0, health: null };
export const history = []; // {t, done: Map(id -> finished messages), queues} per event, 10 min
let past = null; // the latest "history" event: {ts, step_ms, messages}

function setState(s) {
  state = s;
  for (const fn of statusSubs) fn(s);
}

export function connectionState() { return state; }

const cid = (c) => (c._id && (c._id.$oid || c._id)) || c.id;
// Messages of each campaign that reached an end (the receipts applied so far; a bounce is a
// part of failed).
function finished(campaigns) {
  const m = new Map();
  for (const c of campaigns || []) m.set(cid(c), (c.sent || 0) + (c.failed || 0));
  return m;
}

function notify() {
  for (const fn of subs) {
    try { fn(latest); } catch (e) { console.warn('sse subscriber', e); }
  }
}

function onHistory(ev) {
  let data;
  try { data = JSON.parse(ev.data); } catch { return; }
  if (!data || !Array.isArray(data.messages) || typeof data.ts !== 'number') return;
  past = { ts: data.ts, step: data.step_ms || 1000, messages: data.messages };
  // Live points the history already covers are dropped: it counted them.
  while (history.length > 1 && history[1].t <= past.ts) history.shift();
  if (latest.t) notify();
}

function take(data) {
  const t = data.ts || data.t || Date.now();
  if (Array.isArray(data.campaigns)) latest.campaigns = data.campaigns;
  let queues = Array.isArray(data.queues) ? data.queues : data.queues && data.queues.queues;
  if (Array.isArray(queues) && typeof data.held === 'number')
    queues = queues.map((q) => (q.name === 'sends' && q.held === undefined ? { ...q, held: data.held } : q));
  if (Array.isArray(queues)) latest.queues = queues;
  if (data.redis || data.mongodb) latest.health = { redis: data.redis, mongodb: data.mongodb };
  history.push({ t, done: finished(latest.campaigns), queues: latest.queues });
  while (history.length && history[0].t < t - WINDOW_MS) history.shift();
  latest.t = t;
  notify();
}

function onMessage(ev) {
  let data;
  try { data = JSON.parse(ev.data); } catch { return; }
  if (data && typeof data === 'object') take(data);
}

function open() {
  clearTimeout(timer);
  if (es) es.close();
  setState(opened ? 'retrying' : 'connecting');
  es = new EventSource('/api/events');
  es.onopen = () => { opened = true; backoff = 1000; setState('live'); };
  es.onmessage = onMessage;
  es.addEventListener('history', onHistory);
  for (const name of ['tick', 'progress', 'queues', 'campaigns', 'snapshot']) es.addEventListener(name, onMessage);
  es.onerror = () => {
    if (es.readyState !== EventSource.CLOSED) { setState('retrying'); return; }
    es = null;
    if (!opened && backoff >= 4000) { startPolling(); return; }
    setState('retrying');
    timer = setTimeout(open, backoff);
    backoff = Math.min(backoff * 2, 30000);
  };
}

async function pollOnce() {
  const data = { t: Date.now() };
  try { data.queues = (await get('/api/queues')).queues; } catch { /* staff: no queue figures */ }
  try { data.campaigns = await get('/api/campaigns'); } catch { /* keep the last */ }
  take(data);
}

function startPolling() {
  setState('polling');
  pollOnce();
  pollTimer = setInterval(pollOnce, 5000);
}

// fn(latest) after every event; returns the unsubscribe function. Opens the stream on first use.
export function subscribe(fn) {
  subs.add(fn);
  if (!es && !timer && !pollTimer) open();
  if (latest.t) fn(latest);
  return () => subs.delete(fn);
}

export function onStatus(fn) {
  statusSubs.add(fn);
  fn(state);
  return () => statusSubs.delete(fn);
}

// Close everything (sign out).
export function stop() {
  clearTimeout(timer);
  clearInterval(pollTimer);
  timer = pollTimer = null;
  if (es) es.close();
  es = null;
  opened = false;
  backoff = 1000;
  history.length = 0;
  past = null;
  latest.campaigns = latest.queues = null;
  latest.t = 0;
  setState('idle');
}

// Messages per second, [{t, v}] over the last 10 minutes: the stream's history event up to its
// "ts", then the figures between consecutive events after it (receipts applied to the
// campaigns present in both). Events stop while nothing changes: a gap longer than 3 s is
// drawn as zero.
export function rateSeries() {
  const out = [];
  const from = Date.now() - WINDOW_MS;
  if (past) {
    const n = past.messages.length;
    past.messages.forEach((v, i) => {
      const t = past.ts - (n - 1 - i) * past.step;
      if (t >= from) out.push({ t, v: (v * 1000) / past.step });
    });
  }
  for (let i = 1; i < history.length; i++) {
    const a = history[i - 1], b = history[i];
    if (past && b.t <= past.ts) continue;
    const dt = (b.t - a.t) / 1000;
    if (dt <= 0) continue;
    let n = 0;
    for (const [id, v] of b.done) if (a.done.has(id)) n += Math.max(0, v - a.done.get(id));
    if (dt > 3) {
      out.push({ t: a.t + 1000, v: 0 }, { t: b.t - 1000, v: 0 });
      out.push({ t: b.t, v: n / dt });
    } else {
      out.push({ t: b.t, v: n / dt });
    }
  }
  return out;
}
