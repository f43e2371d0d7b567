// sse: the one live connection of the dashboard, GET /api/events (Server-Sent Events: campaign
// progress and queue figures about once a second). One EventSource per tab, shared by every
// page; pages subscribe and unsubscribe as they come and go.
//
// Reconnection: the browser re-opens a dropped stream by itself; when the server refused the
// stream (EventSource gives up: readyState CLOSED, e.g. a 503 during a restart) we open it
// again after 1, 2, 4 ... 30 s. If the stream never opened at all (a server without
// /api/events), the same figures are read every 5 s from /api/queues and /api/campaigns instead.
//
// The data of an event is JSON; any of these keys is taken: "campaigns" (array of campaigns
// with their counters), "queues" (array of queue figures, as GET /api/queues), "t" (ms).
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
export const latest = { campaigns: null, queues: null, t: 0 };
export const history = []; // {t, items, queues} one per tick, last 10 minutes

function setState(s) {
  state = s;
  for (const fn of statusSubs) fn(s);
}

export function connectionState() { return state; }

// Items acknowledged so far by the send queues (messages handed to the vendor and answered).
function sentItems(queues) {
  let n = 0;
  for (const q of queues || []) {
    if (q.name === 'sends' || q.name === 'priority') n += q.items ?? q.acked ?? 0;
  }
  return n;
}

function take(data) {
  const t = data.t || Date.now();
  if (Array.isArray(data.campaigns)) latest.campaigns = data.campaigns;
  const queues = Array.isArray(data.queues) ? data.queues : data.queues && data.queues.queues;
  if (Array.isArray(queues)) {
    latest.queues = queues;
    history.push({ t, items: sentItems(queues), queues });
    while (history.length && history[0].t < t - WINDOW_MS) history.shift();
  }
  latest.t = t;
  for (const fn of subs) {
    try { fn(latest); } catch (e) { console.warn('sse subscriber', e); }
  }
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
  latest.campaigns = latest.queues = null;
  latest.t = 0;
  setState('idle');
}

// Messages per second between consecutive samples: [{t, v}] over the last 10 minutes.
export function rateSeries() {
  const out = [];
  for (let i = 1; i < history.length; i++) {
    const a = history[i - 1], b = history[i];
    const dt = (b.t - a.t) / 1000;
    if (dt > 0) out.push({ t: b.t, v: Math.max(0, (b.items - a.items) / dt) });
  }
  return out;
}
