// dom: small helpers every page uses to build the page without innerHTML (so no text from the
// API is ever parsed as HTML, and the Content-Security-Policy needs no 'unsafe-inline').
//
//   h(tag, attrs, ...children)  an element; attrs: class, text, on<event>, aria-*, any attribute
//   field(label, input)         a <label> wrapping its control (every input has a label)
//   table(columns, rows)        a <table> with a caption and column headers
//   pager(state, onChange)      Previous / Next buttons and the page number
//   fmtDate, fmtNum, badge      formatting

export function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k === 'class') el.setAttribute('class', v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
// A labelled control: <label for=id>text</label> + control (+ an optional hint).
export function field(label, control, hint) {
  if (!control.id) control.id = 'f' + ++uid;
  const parts = [h('label', { for: control.id, text: label }), control];
  if (hint) {
    const hid = control.id + '-hint';
    control.setAttribute('aria-describedby', hid);
    parts.push(h('small', { id: hid, class: 'hint', text: hint }));
  }
  return h('div', { class: 'field' }, parts);
}

// columns: [{label, get(row) -> string|Node}]; rows: array.
export function table(caption, columns, rows, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p', { class: 'muted empty', text: empty });
  return h('div', { class: 'tablewrap' },
    h('table', {},
      h('caption', { class: 'sr-only', text: caption }),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', text: c.label })))),
      h('tbody', {}, rows.map((r) => h('tr', {}, columns.map((c) => h('td', {}, c.get(r))))))));
}

// state: {page, hasNext, pages?, label}; onChange(newPage). Nothing when there is one page.
export function pager(state, onChange) {
  if (state.page <= 1 && !state.hasNext) return document.createComment('one page');
  return h('nav', { class: 'pager', 'aria-label': state.label || 'Pages' },
    h('button', { type: 'button', disabled: state.page <= 1, onclick: () => onChange(state.page - 1) }, '← Previous'),
    h('span', { 'aria-live': 'polite' }, `Page ${state.page}${state.pages ? ' of ' + state.pages : ''}`),
    h('button', { type: 'button', disabled: !state.hasNext, onclick: () => onChange(state.page + 1) }, 'Next →'));
}

export function fmtDate(v) {
  if (v === undefined || v === null || v === '') return '—';
  const d = typeof v === 'number' ? new Date(v) : new Date(v.$date || v);
  if (isNaN(d)) return String(v);
  return d.toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}

export function fmtNum(v) {
  if (v === undefined || v === null) return '—';
  return typeof v === 'number' ? v.toLocaleString('en-US', { maximumFractionDigits: 2 }) : String(v);
}

export function badge(status) {
  const s = String(status || '—');
  return h('span', { class: 'badge st-' + s.toLowerCase() }, s);
}

export function idOf(doc) {
  const v = doc && doc._id;
  return v && typeof v === 'object' ? v.$oid : v;
}

export function errorBox(err) {
  return h('p', { class: 'error', role: 'alert', text: err && err.message ? err.message : String(err) });
}

// The standard page frame: a heading and the page's content. Moves focus to the heading so a
// keyboard or screen reader user lands on the new page.
export function page(main, title, ...content) {
  const h1 = h('h1', { tabindex: '-1', text: title });
  main.replaceChildren(h1, ...content);
  document.title = title + ' · minicrm';
  h1.focus({ preventScroll: true });
  return h1;
}

// Announce a result to screen readers (and show it) in the live region.
export function announce(text) {
  const live = document.getElementById('live');
  if (!live) return;
  live.textContent = text;
  clearTimeout(announce.t);
  announce.t = setTimeout(() => { live.textContent = ''; }, 6000);
}

// A modal confirmation (<dialog>: focus stays inside, Escape cancels). Resolves true or false.
export function confirmDialog(title, text, okLabel = 'Confirm') {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'submit', value: 'ok', class: 'danger' }, okLabel);
    const cancel = h('button', { type: 'submit', value: 'cancel' }, 'Keep it');
    const dlg = h('dialog', { class: 'confirm', 'aria-labelledby': 'dlg-title' },
      h('form', { method: 'dialog' },
        h('h2', { id: 'dlg-title', text: title }),
        h('p', { text }),
        h('div', { class: 'actions' }, cancel, ok)));
    const back = document.activeElement;
    dlg.addEventListener('close', () => {
      dlg.remove();
      if (back && back.focus) back.focus();
      resolve(dlg.returnValue === 'ok');
    });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}
