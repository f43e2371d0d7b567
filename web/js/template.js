// template: the browser's copy of lib/template's rendering, for the message preview only (the
// server validates again and renders every real message). Placeholders {{name}}, {{email}},
// {{total_spend}}, spaces inside the braces allowed; total_spend as money: integers without
// decimals, else up to two ("12.5", "99.99").

export const DEFAULT_TEMPLATE = "Hi {{name}}, thanks for being with us! Here's a special offer just for you.";
export const MAX_BYTES = 2000;

export function formatMoney(v) {
  if (!Number.isFinite(v)) v = 0;
  const r = Math.round(v * 100) / 100;
  if (Number.isInteger(r)) return String(r);
  return r.toFixed(2).replace(/0+$/, '');
}

// {text} or {error} (naming the problem as the server would).
export function render(tpl, c) {
  if (new TextEncoder().encode(tpl).length > MAX_BYTES) return { error: `message: at most ${MAX_BYTES} bytes` };
  let out = '';
  let p = 0;
  for (;;) {
    const open = tpl.indexOf('{{', p);
    if (open < 0) { out += tpl.slice(p); break; }
    out += tpl.slice(p, open);
    const close = tpl.indexOf('}}', open + 2);
    if (close < 0) return { error: `message: unclosed "{{" at offset ${open}` };
    const key = tpl.slice(open + 2, close).replace(/^[ \t]+|[ \t]+$/g, '');
    if (key === 'name') out += c.name || '';
    else if (key === 'email') out += c.email || '';
    else if (key === 'total_spend') out += formatMoney(Number(c.total_spend) || 0);
    else return { error: `message: unknown placeholder {{${key.slice(0, 40)}}} (allowed: {{name}}, {{email}}, {{total_spend}})` };
    p = close + 2;
  }
  return { text: out };
}
