// chart: a small SVG line chart for time series (messages/s, queue depths, campaign progress).
// Written here rather than vendored: a few lines of SVG cover what the dashboard needs, with
// no third-party code to keep up to date. Colours come from CSS classes (s0, s1, ...), so the
// Content-Security-Policy needs no inline styles.
//
//   lineChart({title, series: [{name, points: [{t, v}]}], width, height, yLabel, windowMs})
//   width and height are in SVG units, drawn at about that many pixels (text stays readable):
//   about 440 for a card of a third of the page, 1160 for a full-width card.
//   returns a <figure> with the SVG, a legend and a text summary for screen readers.

import { h } from './dom.js';

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtTick(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(v % 1e6 ? 1 : 0) + 'M';
  if (v >= 1e3) return (v / 1e3).toFixed(v % 1e3 ? 1 : 0) + 'k';
  return String(Math.round(v * 100) / 100);
}

function clock(t) {
  return new Date(t).toISOString().slice(11, 19);
}

export function lineChart({ title, series, width = 640, height = 180, yLabel = '', windowMs }) {
  const W = width, H = height, L = 48, R = 8, T = 10, B = 22;
  const all = series.flatMap((s) => s.points);
  const now = all.length ? Math.max(...all.map((p) => p.t)) : Date.now();
  const t0 = windowMs ? now - windowMs : (all.length ? Math.min(...all.map((p) => p.t)) : now - 60000);
  const t1 = Math.max(now, t0 + 1000);
  const ymax = niceMax(all.length ? Math.max(...all.map((p) => p.v)) * 1.1 : 0);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / ymax) * (H - T - B);

  const svg = h('svg:svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    svg.append(h('svg:line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(h('svg:text', { x: L - 6, y: y(v) + 4, class: 'tick', 'text-anchor': 'end' }, fmtTick(v)));
  }
  let lastLabel = '';
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    if (clock(t) === lastLabel) continue; // a short range: one label per second
    lastLabel = clock(t);
    svg.append(h('svg:text', { x: x(t), y: H - 6, class: 'tick', 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, clock(t)));
  }
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => p.t >= t0);
    if (!pts.length) return;
    const d = pts.map((p, j) => `${j ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join('');
    svg.append(h('svg:path', { d, class: `line s${i % 6}` }));
    if (pts.length === 1) svg.append(h('svg:circle', { cx: x(pts[0].t), cy: y(pts[0].v), r: 3, class: `dot s${i % 6}` }));
  });

  const last = series.map((s) => `${s.name}: ${s.points.length ? fmtTick(s.points[s.points.length - 1].v) : 'no data'}`).join(', ');
  return h('figure', { class: 'chartbox' },
    h('figcaption', {}, h('span', { class: 'charttitle', text: title }), yLabel ? h('span', { class: 'muted', text: ' (' + yLabel + ')' }) : null),
    svg,
    series.length > 1 ? h('ul', { class: 'legend' }, series.map((s, i) => h('li', {}, h('span', { class: `swatch s${i % 6}`, 'aria-hidden': 'true' }), s.name))) : null,
    h('p', { class: 'sr-only', text: all.length ? `Latest ${last}.` : 'No data yet.' }));
}
