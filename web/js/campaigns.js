// campaigns: what the overview and the campaign page share about a campaign: its counters by
// status, its progress bar, and the operator moves that are legal from its state (the same
// table as lib/campaign.c's LEGAL: pause from QUEUED | SENDING | PAUSED, resume from PAUSED,
// cancel from SCHEDULED | QUEUED | SENDING | PAUSED | CANCELLED). Pause on PAUSED and cancel on
// CANCELLED are legal there (they finish an interrupted move) but are not offered as buttons.

import { h, fmtNum } from './dom.js';

// Counters in display order; one is shown only when the API gives it. The first are the logs
// by status; the event counters after them are parts of those (lib/campaign: opened and clicked
// of sent, bounced of failed, complained of sent), shown with that share.
export const COUNTERS = ['sent', 'failed', 'cancelled', 'pending', 'bounced', 'complained', 'opened', 'clicked'];
const PART_OF = { opened: 'sent', clicked: 'sent', complained: 'sent', bounced: 'failed' };

export const MOVES = {
  pause: { label: 'Pause', from: ['QUEUED', 'SENDING'] },
  resume: { label: 'Resume', from: ['PAUSED'] },
  cancel: { label: 'Cancel', from: ['SCHEDULED', 'QUEUED', 'SENDING', 'PAUSED'], admin: true, confirm: true },
};

export function legalMoves(status, role) {
  return Object.entries(MOVES)
    .filter(([, m]) => m.from.includes(status) && (!m.admin || role === 'admin'))
    .map(([name, m]) => ({ name, ...m }));
}

// The campaign's counters: the exact "progress" of GET /api/campaigns/:id when present, else
// the counters stored on the campaign (lists and live events).
export function counters(c) {
  const p = c.progress || {};
  const out = {};
  for (const k of COUNTERS) {
    const v = p[k] ?? c[k];
    if (typeof v === 'number') out[k] = v;
  }
  return out;
}

export function audience(c) {
  return (c.progress && c.progress.audience_size) ?? c.audience_size ?? c.total ?? 0;
}

// Messages that reached an end: sent + failed + cancelled (bounced is a part of failed, and
// opened / clicked of sent: lib/campaign's counters).
export function done(c) {
  const k = counters(c);
  return (k.sent || 0) + (k.failed || 0) + (k.cancelled || 0);
}

export function progressBar(c, label) {
  const max = Math.max(audience(c), 1);
  const value = Math.min(done(c), max);
  const pct = Math.round((100 * value) / max);
  return h('div', { class: 'progress' },
    h('progress', { max, value, 'aria-label': label || 'Progress' }),
    h('span', { class: 'pct', text: `${pct}% · ${fmtNum(done(c))} / ${fmtNum(audience(c))}` }));
}

// The counters: the logs by status in one <dl class="counters">, the event counters in a second
// one below it (each dd holds the figure only, tests read it; an event counter adds its share of
// the status it is a part of in a separate, muted span when it is not 0).
export function counterList(c) {
  const k = counters(c);
  const item = ([name, v]) => {
    const of = PART_OF[name];
    const share = of && v > 0 && k[of] > 0 ? h('span', { class: 'share', text: `${Math.round((100 * v) / k[of])}% of ${of}` }) : null;
    return h('div', { class: 'counter c-' + name }, h('dt', { text: name }), h('dd', { text: fmtNum(v) }), share);
  };
  const all = Object.entries(k);
  const status = all.filter(([name]) => !PART_OF[name]);
  const events = all.filter(([name]) => PART_OF[name]);
  return h('div', { class: 'counterbox' },
    h('dl', { class: 'counters' }, status.map(item)),
    events.length ? h('dl', { class: 'counters events' }, events.map(item)) : null);
}
