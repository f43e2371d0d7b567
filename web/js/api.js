// api: every call of the dashboard to minicrm-api. Same origin, the session cookie
// (credentials: 'same-origin'); the API key is only ever sent once, to POST /auth/key, and
// never kept. JSON in and out; an answer >= 400 throws ApiError with the API's {"error"}.
// A 401 sends the user to the sign-in page (the session ended, e.g. the key was revoked).

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
  get notAvailable() { return this.status === 404 || this.status === 405; }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export async function request(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  Object.assign(headers, opts.headers || {});
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal: opts.signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'The server did not answer: ' + e.message);
  }
  const text = await res.text();
  let json = null;
  if (text) {
    try { json = JSON.parse(text); } catch { json = null; }
  }
  if (!res.ok) {
    if (res.status === 401 && !opts.allow401) onUnauthorized();
    const msg = (json && json.error) || `${method} ${path}: HTTP ${res.status}`;
    throw new ApiError(res.status, msg, json);
  }
  return { status: res.status, json, headers: res.headers };
}

export const get = async (path, opts) => (await request('GET', path, undefined, opts)).json;
export const post = async (path, body, opts) => (await request('POST', path, body ?? {}, opts)).json;
export const del = async (path, opts) => (await request('DELETE', path, undefined, opts)).json;

// Query string from an object, leaving out empty values.
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? '?' + s : '';
}
