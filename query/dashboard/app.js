// Herald's dashboard: one page over the same /v1 API every client uses. No framework and no
// build step. Rules kept throughout: every text that comes from the API or the user goes
// into the page through textContent or attribute setters (the h() helper), never as markup;
// styles come from app.css classes (the Content-Security-Policy forbids inline styles and
// scripts); times are shown in local time with the ISO value in a title.


// ------------------------------------------------------------------ DOM helpers

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Appends children: strings and numbers become text nodes; null, undefined and false are skipped. */
function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
  return parent;
}

/** An HTML element. `props`: class, text, dataset, on<event>, for, and plain attributes. */
function h(tag, props, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') element.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    else if (key === 'text') element.textContent = String(value);
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else if (key === 'for') element.htmlFor = value;
    else if (key.startsWith('on') && typeof value === 'function') element.addEventListener(key.slice(2), value);
    else if (value === true) element.setAttribute(key, '');
    else element.setAttribute(key, String(value));
  }
  return append(element, children);
}

/** An SVG element with plain attributes. */
function s(tag, attributes, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    element.setAttribute(key, String(value));
  }
  return append(element, children);
}

/** Like Element.append, but skipping null/false and flattening arrays (see append). */
function put(parent, ...children) {
  return append(parent, children);
}

function clear(element) {
  element.replaceChildren();
  return element;
}

let uniqueCounter = 0;
function uniqueId(prefix) {
  uniqueCounter += 1;
  return `${prefix}-${uniqueCounter}`;
}

/** A labelled form field: `<div class="field"><label for>…</label>control</div>`. */
function field(labelText, control, hint) {
  if (!control.id) control.id = uniqueId('field');
  const hintElement = hint ? h('p', { class: 'hint', id: `${control.id}-hint`, text: hint }) : null;
  if (hintElement) control.setAttribute('aria-describedby', hintElement.id);
  return h('div', { class: 'field' }, h('label', { for: control.id, text: labelText }), control, hintElement);
}

function selectOf(options, selected, props) {
  return h('select', props, options.map(([value, label]) =>
    h('option', { value, selected: value === selected, text: label })));
}

function button(label, onclick, props = {}) {
  return h('button', { type: 'button', ...props, onclick }, label);
}

function badge(text, tone = 'neutral', title) {
  return h('span', { class: ['badge', `badge-${tone}`], text, title });
}

function alertBox(message, tone = 'error') {
  return h('div', { class: ['alert', `alert-${tone}`], role: tone === 'error' ? 'alert' : 'status' }, message);
}

function mono(text, title) {
  return h('code', { class: 'mono', text, title });
}

function definitionList(rows) {
  return h('dl', { class: 'facts' }, rows.filter(Boolean).map(([term, value]) =>
    h('div', null, h('dt', { text: term }), h('dd', null, value))));
}

// ------------------------------------------------------------------ formatting

const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const shortTimeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const periodFormat = new Intl.DateTimeFormat(undefined, { weekday: 'short', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
const integerFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

/** A <time> in local time, with the ISO value in its title; a dash when there is none. */
function timeElement(iso) {
  if (!iso) return h('span', { class: 'muted', text: '—' });
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h('span', { text: iso });
  return h('time', { datetime: iso, title: iso, text: dateTimeFormat.format(date) });
}

function formatCount(value) {
  return value === null || value === undefined ? '—' : integerFormat.format(value);
}

/** A rate (a fraction 0-1) as a percentage; more digits close to 100 %. */
function formatRate(rate) {
  if (rate === null || rate === undefined || Number.isNaN(rate)) return '—';
  const percent = rate * 100;
  if (percent === 0 || percent === 100) return `${percent} %`;
  // Small shares keep two significant digits (0.040 %), shares close to 100 % two decimals.
  if (percent < 1) return `${percent.toPrecision(2)} %`;
  const digits = percent >= 99 ? 2 : 1;
  return `${percent.toFixed(digits)} %`;
}

function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

function formatDuration(seconds) {
  const total = Math.abs(Math.round(seconds));
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = total % 60;
  const parts = [];
  if (days) parts.push(`${days} d`);
  if (hours) parts.push(`${hours} h`);
  if (minutes) parts.push(`${minutes} min`);
  if (rest || parts.length === 0) parts.push(`${rest} s`);
  return parts.join(' ');
}

function humanize(word) {
  return String(word).replace(/_/g, ' ');
}

const TONES = {
  succeeded: 'ok', delivered: 'ok', closed: 'ok', healthy: 'ok', enabled: 'ok',
  failed: 'bad', dead_lettered: 'bad', expired: 'bad', open: 'bad', failing: 'bad', disabled: 'bad',
  retrying: 'warn', retry_scheduled: 'warn', half_open: 'warn', delivering: 'warn', pending: 'info',
};

function statusBadge(status, title) {
  if (!status) return badge('unknown', 'neutral', title);
  return badge(humanize(status), TONES[status] || 'neutral', title);
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A link to an event's page; `short` shows the last 12 characters (ids are UUIDv7: their
 * first characters are a timestamp that neighbours share), the full id in title and label.
 */
function eventLink(eventId, short = false) {
  return h('a', {
    href: `#/events/${encodeURIComponent(eventId)}`, class: 'mono',
    title: short ? eventId : null, 'aria-label': short ? `Event ${eventId}` : null,
  }, short ? `…${eventId.slice(-12)}` : eventId);
}

function endpointLink(endpointId, label) {
  return h('a', { href: `#/endpoints/${encodeURIComponent(endpointId)}`, class: label ? null : 'mono' }, label || endpointId);
}

/** Turns the value of a datetime-local input (local time) into RFC 3339, or null. */
function localInputToIso(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** The reverse, for filling a datetime-local input from an RFC 3339 value. */
function isoToLocalInput(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (number) => String(number).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

// ------------------------------------------------------------------ API

/** A problem+json answer (or no answer at all: status 0). */
class ApiProblem extends Error {
  constructor(status, problem, retryAfter) {
    super(problem.detail || problem.title || `Herald answered HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

/** Thrown after a 401 has sent the user back to the login screen: nothing more to show. */
class SignedOut extends Error {}

const auth = {
  token: null,
  /** 'api_key' (pasted, kept in sessionStorage) or 'portal' (from the address). */
  source: null,
  /** The answer of GET /v1/session. */
  session: null,
};

const KEY_STORAGE = 'herald.apiKey';

async function api(path, { method = 'GET', params, body } = {}) {
  if (!auth.token) throw new SignedOut();
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, value);
  }
  const headers = { Authorization: `Bearer ${auth.token}`, Accept: 'application/json, application/problem+json' };
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body: payload, cache: 'no-store', credentials: 'omit' });
  } catch (error) {
    throw new ApiProblem(0, { detail: `Herald did not answer (${error.message}); check the connection and try again.` });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (response.ok) return data;
  const problem = data && typeof data === 'object' ? data : { detail: text.slice(0, 300) || response.statusText };
  if (response.status === 401) {
    signOut(problem.detail || 'Herald refused the credentials.');
    throw new SignedOut();
  }
  throw new ApiProblem(response.status, problem, response.headers.get('Retry-After'));
}

/** What to tell the user about a failed call (a 429 says when to try again). */
function problemText(error) {
  if (error instanceof ApiProblem) {
    let text = error.message;
    if (error.status === 429 && error.retryAfter) text += ` (try again in ${error.retryAfter} s)`;
    return text;
  }
  return `Unexpected error: ${error && error.message ? error.message : error}`;
}

/** Shows an error in a container, unless it was a sign-out (the login screen says it all). */
function showProblem(container, error) {
  if (error instanceof SignedOut) return;
  clear(container).appendChild(alertBox(problemText(error)));
}

/** Fetches every page of a cursor-paged list, up to `maxPages`. */
async function fetchAll(path, params, maxPages = 4) {
  const rows = [];
  let cursor;
  for (let page = 0; page < maxPages; page += 1) {
    const answer = await api(path, { params: { ...params, cursor } });
    rows.push(...(answer.data || []));
    cursor = answer.next_cursor;
    if (!cursor) return { rows, complete: true };
  }
  return { rows, complete: false };
}

let endpointCache = null;

/** The tenant's endpoints (cached for a page view; `fresh` asks again). */
async function loadEndpoints(fresh = false) {
  if (!endpointCache || fresh) {
    endpointCache = api('/v1/webhook_endpoints').then((answer) => answer.data || []);
    endpointCache.catch(() => { endpointCache = null; });
  }
  return endpointCache;
}

function endpointsById(endpoints) {
  return new Map(endpoints.map((endpoint) => [endpoint.endpoint_id, endpoint]));
}

const readOnly = () => Boolean(auth.session && auth.session.read_only);

// ------------------------------------------------------------------ pages and routing

const main = document.getElementById('main');

/** The page on screen; its timers stop and its late answers are dropped when it is left. */
let currentPage = null;

class Page {
  constructor(title) {
    this.title = title;
    this.active = true;
    this.timers = new Set();
  }

  alive() {
    return this.active && currentPage === this;
  }

  later(callback, ms) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.alive()) callback();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  close() {
    this.active = false;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}

function openPage(title, routeName) {
  if (currentPage) currentPage.close();
  const page = new Page(title);
  currentPage = page;
  document.title = `${title} · Herald`;
  clear(main);
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.route === routeName) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  return page;
}

function pageHeader(title, ...extra) {
  return h('div', { class: 'page-header' }, h('h1', { tabindex: '-1', text: title }), ...extra);
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '');
  const questionMark = raw.indexOf('?');
  const path = questionMark < 0 ? raw : raw.slice(0, questionMark);
  const query = questionMark < 0 ? '' : raw.slice(questionMark + 1);
  return { path: path || '/', params: new URLSearchParams(query) };
}

/** Records filter choices in the address without re-rendering (no hashchange). */
function replaceHashQuery(path, values) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) if (value) params.set(name, value);
  const query = params.toString();
  history.replaceState(null, '', `#${path}${query ? `?${query}` : ''}`);
}

const ROUTES = [
  [/^\/overview$/, 'overview', 'Overview', renderOverview],
  [/^\/endpoints$/, 'endpoints', 'Endpoints', renderEndpoints],
  [/^\/endpoints\/([^/]+)$/, 'endpoints', 'Endpoint', renderEndpoint],
  [/^\/events$/, 'events', 'Events', renderEvents],
  [/^\/events\/([^/]+)$/, 'events', 'Event', renderEvent],
  [/^\/dead-letters$/, 'dead-letters', 'Dead letters', renderDeadLetters],
  [/^\/verify$/, 'verify', 'Verify a signature', renderVerify],
];

let focusOnRender = false;

function route() {
  const { path, params } = parseHash();
  if (!auth.session) {
    // Only the signature verifier works without signing in: it never calls Herald.
    if (path === '/verify') renderVerify(openPage('Verify a signature', 'verify'), params);
    else if (auth.source === null) showLogin();
    return;
  }
  if (path === '/' || path === '') {
    history.replaceState(null, '', '#/overview');
    route();
    return;
  }
  for (const [pattern, name, title, render] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    const page = openPage(title, name);
    const args = match.slice(1).map((part) => {
      try { return decodeURIComponent(part); } catch { return part; }
    });
    render(page, params, ...args);
    if (focusOnRender) {
      // A link followed: start at the top, with the focus on the new page's heading.
      window.scrollTo(0, 0);
      const heading = main.querySelector('h1');
      if (heading) heading.focus({ preventScroll: true });
    }
    focusOnRender = false;
    return;
  }
  openPage('Not found', null);
  put(main, pageHeader('Page not found'),
    h('p', null, 'There is no such page. ', h('a', { href: '#/overview', text: 'Go to the overview' }), '.'));
}

// ------------------------------------------------------------------ session

function portalToken() {
  const prefix = '/portal/';
  if (!location.pathname.startsWith(prefix)) return null;
  const token = location.pathname.slice(prefix.length).replace(/\/+$/, '');
  try {
    return token ? decodeURIComponent(token) : null;
  } catch {
    return token || null;
  }
}

function setChrome(signedIn) {
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('search').hidden = !signedIn;
  document.getElementById('session').hidden = !signedIn;
  document.getElementById('search-message').textContent = '';
  if (!signedIn) return;
  const session = auth.session;
  const tenant = document.getElementById('session-tenant');
  tenant.textContent = `Tenant ${session.tenant_id}`;
  tenant.title = session.tenant_id;
  const mode = document.getElementById('session-mode');
  const portal = session.credential === 'portal_session';
  let modeText = portal ? 'Portal link' : 'API key';
  if (session.read_only) modeText += ' · read-only view';
  mode.textContent = modeText;
  mode.className = `badge ${session.read_only ? 'badge-warn' : 'badge-info'}`;
  mode.title = session.expires_at ? `Expires ${dateTimeFormat.format(new Date(session.expires_at))} (${session.expires_at})` : '';
  document.getElementById('logout').hidden = auth.source !== 'api_key';
}

/** Back to the login screen, with Herald's reason. */
function signOut(detail) {
  const wasPortal = auth.source === 'portal';
  sessionStorage.removeItem(KEY_STORAGE);
  auth.token = null;
  auth.session = null;
  auth.source = null;
  endpointCache = null;
  showLogin(detail, wasPortal);
}

function showLogin(detail, fromPortal = false) {
  openPage('Sign in', null);
  setChrome(false);
  const input = h('input', {
    id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'hk_…', required: true,
  });
  const message = h('div', { class: 'login-message' });
  if (detail) {
    message.appendChild(alertBox(fromPortal ? `This portal link does not work: ${detail}` : detail));
  }
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'login-form', novalidate: true },
    field('API key', input, 'Kept in this browser tab only (session storage) and sent to this Herald as a bearer token.'),
    submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      clear(message).appendChild(alertBox('Paste an API key first.'));
      input.focus();
      return;
    }
    if (!key.startsWith('hk_')) {
      clear(message).appendChild(alertBox('That is not an API key: API keys start with hk_.'));
      input.focus();
      return;
    }
    submit.disabled = true;
    clear(message).appendChild(alertBox('Checking the key…', 'info'));
    auth.token = key;
    auth.source = 'api_key';
    try {
      auth.session = await api('/v1/session');
    } catch (error) {
      if (!(error instanceof SignedOut)) {
        auth.token = null;
        auth.source = null;
        submit.disabled = false;
        showProblem(message, error);
      }
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    if (location.pathname.startsWith('/portal/')) {
      // A key replaces the refused portal link: continue on the plain dashboard address.
      location.assign('/dashboard#/overview');
      return;
    }
    enterApp();
  });
  put(main, h('section', { class: 'login card', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title', text: 'Sign in to Herald' }),
    h('p', { text: 'Paste an API key of your tenant to see its deliveries, endpoints and service levels.' }),
    message,
    form,
    h('p', { class: 'muted' }, 'The ', h('a', { href: '#/verify', text: 'signature verifier' }),
      ' works without signing in: it runs entirely in this browser.')));
  input.focus();
}

function enterApp() {
  setChrome(true);
  const { path } = parseHash();
  if (path === '/' || path === '') history.replaceState(null, '', '#/overview');
  route();
}

async function start() {
  document.getElementById('skip-link').addEventListener('click', (event) => {
    event.preventDefault();
    const heading = main.querySelector('h1');
    (heading || main).focus();
  });
  document.getElementById('logout').addEventListener('click', () => signOut(null));
  document.getElementById('search').addEventListener('submit', onSearch);
  window.addEventListener('hashchange', () => {
    focusOnRender = true;
    document.getElementById('search-message').textContent = '';
    route();
  });

  const portal = portalToken();
  if (portal) {
    auth.token = portal;
    auth.source = 'portal';
  } else {
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) {
      auth.token = key;
      auth.source = 'api_key';
    }
  }
  if (!auth.token) {
    route();
    return;
  }
  try {
    auth.session = await api('/v1/session');
  } catch (error) {
    if (error instanceof SignedOut) return;
    openPage('Herald unavailable', null);
    put(main, pageHeader('Herald did not answer'), alertBox(problemText(error)),
      h('p', null, button('Try again', () => location.reload())));
    return;
  }
  enterApp();
}

// ------------------------------------------------------------------ search

async function onSearch(event) {
  event.preventDefault();
  const input = document.getElementById('search-input');
  const message = document.getElementById('search-message');
  const id = input.value.trim().toLowerCase();
  message.textContent = '';
  if (!UUID_PATTERN.test(id)) {
    message.textContent = 'Enter an event id or an endpoint id: a UUID such as 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.';
    return;
  }
  message.textContent = 'Looking…';
  try {
    // Endpoints first from the list (one call, and no 404 for an id that is an event's).
    const endpoints = await loadEndpoints(true);
    if (endpoints.some((endpoint) => endpoint.endpoint_id === id)) {
      message.textContent = '';
      input.value = '';
      location.hash = `#/endpoints/${id}`;
      return;
    }
    try {
      await api(`/v1/events/${id}`);
    } catch (error) {
      if (error instanceof ApiProblem && error.status === 404) {
        message.textContent = `No event and no endpoint has the id ${id} in this tenant.`;
        return;
      }
      throw error;
    }
    message.textContent = '';
    input.value = '';
    if (location.hash === `#/events/${id}`) route();
    else location.hash = `#/events/${id}`;
  } catch (error) {
    if (!(error instanceof SignedOut)) message.textContent = problemText(error);
  }
}

// ------------------------------------------------------------------ charts (SVG drawn here)

const CHART = { width: 640, height: 230, left: 70, right: 14, top: 14, bottom: 40 };

/** About `count` round tick values from min to max. */
function niceTicks(min, max, count = 4) {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((factor) => factor * magnitude).find((candidate) => candidate >= raw) || raw;
  const ticks = [];
  for (let value = Math.ceil(min / step) * step; value <= max + step * 1e-9; value += step) {
    ticks.push(Number(value.toPrecision(12)));
  }
  return ticks;
}

function niceMax(max) {
  if (!(max > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(max));
  return [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].map((factor) => factor * magnitude).find((candidate) => candidate >= max);
}

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const TIME_TICK_STEPS = [MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR,
  6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY];

/** Time ticks at round local times, at most about seven. */
function timeTicks(start, end) {
  const span = end - start;
  const step = TIME_TICK_STEPS.find((candidate) => span / candidate <= 7) || 7 * DAY;
  const ticks = [];
  const offset = (time) => new Date(time).getTimezoneOffset() * MINUTE;
  let tick = Math.ceil((start - offset(start)) / step) * step + offset(start);
  for (; tick <= end; tick += step) {
    // A daylight-saving change moves local midnight; re-align on it.
    const aligned = step >= DAY ? tick + (offset(tick) - offset(start)) : tick;
    if (aligned >= start && aligned <= end) ticks.push(aligned);
  }
  return { ticks, label: (time) => (step >= DAY ? dayFormat.format(new Date(time)) : shortTimeFormat.format(new Date(time))) };
}

/**
 * A time-series chart. `periods` are the period starts (ms) every `step` ms; each series has
 * `values` aligned with them (null: no data, drawn as a gap). `kind` is 'line' or 'bars'
 * (bars stack their series). `tooltip(index)` is the text shown when hovering a period.
 */
function timeChart({ title, periods, step, series, kind = 'line', yMin = 0, yMax, yLabel, yFormat, tooltip, reference, empty, integer = false }) {
  const { width, height, left, right, top, bottom } = CHART;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const start = periods.length ? periods[0] : Date.now() - HOUR;
  const end = periods.length ? periods[periods.length - 1] + step : Date.now();
  const x = (time) => left + ((time - start) / (end - start)) * plotWidth;
  let yTop = yMax;
  if (yTop === undefined) {
    let max = 0;
    if (kind === 'bars') {
      for (let index = 0; index < periods.length; index += 1) {
        max = Math.max(max, series.reduce((sum, one) => sum + (one.values[index] || 0), 0));
      }
    } else {
      for (const one of series) for (const value of one.values) if (value !== null) max = Math.max(max, value);
    }
    yTop = niceMax(max);
  }
  const y = (value) => top + plotHeight - ((value - yMin) / (yTop - yMin)) * plotHeight;
  const titleId = uniqueId('chart-title');
  const descId = uniqueId('chart-desc');
  const svg = s('svg', {
    class: 'chart-svg', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': `${titleId} ${descId}`,
    preserveAspectRatio: 'xMidYMid meet',
  }, s('title', { id: titleId }, title), s('desc', { id: descId }, `${yLabel} over time, one value per ${step >= HOUR ? 'hour' : 'minute'}; hover a period for its values.`));

  // Grid and y axis.
  const yAxis = s('g', { class: 'axis axis-y' });
  for (const tick of niceTicks(yMin, yTop, 5).filter((value) => !integer || Number.isInteger(value))) {
    const position = y(tick);
    yAxis.append(
      s('line', { class: 'grid', x1: left, x2: width - right, y1: position, y2: position }),
      s('text', { x: left - 6, y: position + 4, 'text-anchor': 'end' }, yFormat(tick)));
  }
  yAxis.append(s('text', {
    class: 'axis-title', transform: `translate(12 ${top + plotHeight / 2}) rotate(-90)`, 'text-anchor': 'middle',
  }, yLabel));
  svg.append(yAxis);

  // x axis.
  const xAxis = s('g', { class: 'axis axis-x' });
  xAxis.append(s('line', { class: 'axis-line', x1: left, x2: width - right, y1: top + plotHeight, y2: top + plotHeight }));
  const { ticks, label } = timeTicks(start, end);
  for (const tick of ticks) {
    const position = x(tick);
    xAxis.append(
      s('line', { class: 'tick', x1: position, x2: position, y1: top + plotHeight, y2: top + plotHeight + 4 }),
      s('text', { x: position, y: top + plotHeight + 17, 'text-anchor': 'middle' }, label(tick)));
  }
  xAxis.append(s('text', { class: 'axis-title', x: left + plotWidth / 2, y: height - 4, 'text-anchor': 'middle' },
    'Local time'));
  svg.append(xAxis);

  const showReference = reference && reference.value > yMin && reference.value < yTop;
  if (showReference) {
    const position = y(reference.value);
    svg.append(s('line', { class: 'reference', x1: left, x2: width - right, y1: position, y2: position },
      s('title', null, reference.label)));
  }

  const data = s('g', { class: 'data' });
  const slot = plotWidth / Math.max(periods.length, 1);
  if (kind === 'bars') {
    const barWidth = Math.max(slot * 0.8, 0.6);
    periods.forEach((period, index) => {
      let base = yMin;
      series.forEach((one, seriesIndex) => {
        const value = one.values[index] || 0;
        if (value <= 0) return;
        data.append(s('rect', {
          class: `bar series-${one.color ?? seriesIndex}`, x: x(period) + (slot - barWidth) / 2,
          y: y(base + value), width: barWidth, height: Math.max(y(base) - y(base + value), 0.5),
        }));
        base += value;
      });
    });
  } else {
    // One group per series, in order: a later series is drawn over an earlier one.
    series.forEach((one, seriesIndex) => {
      const group = s('g');
      let path = '';
      let open = false;
      one.values.forEach((value, index) => {
        if (value === null || value === undefined) {
          open = false;
          return;
        }
        const px = x(periods[index] + step / 2).toFixed(1);
        const py = y(Math.min(Math.max(value, yMin), yTop)).toFixed(1);
        path += `${open ? 'L' : 'M'}${px} ${py} `;
        const isolated = (index === 0 || one.values[index - 1] === null) &&
          (index === one.values.length - 1 || one.values[index + 1] === null);
        if (isolated || periods.length <= 60) {
          group.append(s('circle', { class: `dot series-${one.color ?? seriesIndex}`, cx: px, cy: py, r: isolated ? 2.5 : 2 }));
        }
        open = true;
      });
      if (path) {
        group.prepend(s('path', { class: ['line', `series-${one.color ?? seriesIndex}`, one.dashed ? 'dashed' : ''].join(' '), d: path.trim() }));
      }
      data.append(group);
    });
  }
  svg.append(data);

  // One hover column per period, carrying the period's values as a tooltip.
  const hover = s('g', { class: 'hover' });
  periods.forEach((period, index) => {
    hover.append(s('rect', { class: 'hover-col', x: x(period), y: top, width: Math.max(slot, 1), height: plotHeight },
      s('title', null, tooltip(index))));
  });
  svg.append(hover);

  if (empty) {
    svg.append(s('text', { class: 'chart-empty', x: left + plotWidth / 2, y: top + plotHeight / 2, 'text-anchor': 'middle' }, empty));
  }

  const legend = h('ul', { class: 'legend', 'aria-label': `Legend of ${title}` }, series.map((one, seriesIndex) =>
    h('li', null, h('span', { class: ['swatch', `series-${one.color ?? seriesIndex}`, one.dashed ? 'dashed' : ''], 'aria-hidden': 'true' }), one.name)),
  showReference ? h('li', null, h('span', { class: 'swatch reference', 'aria-hidden': 'true' }), reference.label) : null);
  return h('figure', { class: 'chart card' }, h('figcaption', null, h('h3', { text: title })), svg, legend);
}

// ------------------------------------------------------------------ overview

const WINDOWS = [['1h', 'Last hour'], ['6h', 'Last 6 hours'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days']];
const FAILING_SUCCESS_RATE = 0.95;

/** Every period of the window, with the points that had attempts placed on them. */
function fillPeriods(sli) {
  const step = sli.granularity === 'minute' ? MINUTE : HOUR;
  const since = Date.parse(sli.since);
  const until = Date.parse(sli.until);
  const byPeriod = new Map();
  for (const point of sli.points || []) byPeriod.set(Math.floor(Date.parse(point.period_start) / step) * step, point);
  const periods = [];
  if (Number.isFinite(since) && Number.isFinite(until)) {
    for (let period = Math.floor(since / step) * step; period < until && periods.length < 2000; period += step) {
      periods.push(period);
    }
  }
  // Points outside [since, until) (clock skew) are kept rather than dropped.
  for (const period of byPeriod.keys()) if (!periods.includes(period)) periods.push(period);
  periods.sort((a, b) => a - b);
  return { step, periods, points: periods.map((period) => byPeriod.get(period) || null) };
}

function failing(row, endpoint) {
  const breaker = endpoint && endpoint.health ? endpoint.health.breaker_state : null;
  return breaker === 'open' || (row && row.success_rate !== null && row.success_rate !== undefined && row.success_rate < FAILING_SUCCESS_RATE);
}

function renderOverview(page, params) {
  const windowChoice = WINDOWS.some(([value]) => value === params.get('window')) ? params.get('window') : '24h';
  const filter = { window: windowChoice, endpoint_id: params.get('endpoint_id') || '', event_type: params.get('event_type') || '' };

  const windowSelect = selectOf(WINDOWS, filter.window, { id: 'overview-window' });
  const endpointSelect = selectOf([['', 'All endpoints']], '', { id: 'overview-endpoint' });
  const typeSelect = selectOf([['', 'All event types']], '', { id: 'overview-type' });
  const refresh = button('Refresh', () => load(), { class: 'secondary' });
  const status = h('p', { class: 'muted status-line', role: 'status' });
  const kpis = h('section', { class: 'kpis', 'aria-label': 'Totals for the window' });
  const charts = h('div', { class: 'charts' });
  const errors = h('div');
  const endpointsTable = h('div');
  const problems = h('div');

  const controls = h('form', { class: 'controls', 'aria-label': 'What to show' },
    field('Window', windowSelect), field('Endpoint', endpointSelect), field('Event type', typeSelect),
    h('div', { class: 'field field-button' }, refresh));
  controls.addEventListener('submit', (event) => event.preventDefault());
  const onChange = () => {
    filter.window = windowSelect.value;
    filter.endpoint_id = endpointSelect.value;
    filter.event_type = typeSelect.value;
    replaceHashQuery('/overview', filter);
    load();
  };
  for (const select of [windowSelect, endpointSelect, typeSelect]) select.addEventListener('change', onChange);

  put(main, pageHeader('Overview'), controls, status, problems, kpis, charts,
    h('div', { class: 'columns' },
      h('section', { class: 'card grow', 'aria-labelledby': 'overview-endpoints' },
        h('h2', { id: 'overview-endpoints', text: 'Endpoints in this window' }), endpointsTable),
      h('section', { class: 'card side', 'aria-labelledby': 'overview-errors' },
        h('h2', { id: 'overview-errors', text: 'Errors by class' }), errors)));

  let sequence = 0;
  async function load() {
    sequence += 1;
    const mine = sequence;
    status.textContent = 'Loading…';
    main.setAttribute('aria-busy', 'true');
    const sliParams = { window: filter.window, endpoint_id: filter.endpoint_id, event_type: filter.event_type };
    const results = await Promise.allSettled([
      api('/v1/sli', { params: sliParams }),
      api('/v1/sli/breakdown', { params: { window: filter.window, by: 'endpoint' } }),
      api('/v1/sli/breakdown', { params: { window: filter.window, by: 'event_type' } }),
      loadEndpoints(true),
    ]);
    if (!page.alive() || mine !== sequence) return;
    main.removeAttribute('aria-busy');
    if (results.some((result) => result.status === 'rejected' && result.reason instanceof SignedOut)) return;
    clear(problems);
    for (const result of results) {
      if (result.status === 'rejected') problems.appendChild(alertBox(problemText(result.reason)));
    }
    const [sli, byEndpoint, byType, endpoints] = results.map((result) => (result.status === 'fulfilled' ? result.value : null));
    const endpointMap = endpointsById(endpoints || []);

    fillEndpointOptions(endpointSelect, endpoints || [], filter.endpoint_id);
    fillTypeOptions(typeSelect, byType ? byType.data || [] : [], filter.event_type);
    if (sli) {
      renderKpis(kpis, sli.totals, filter.window);
      renderCharts(charts, sli);
      renderErrors(errors, sli.totals.errors || {});
    } else {
      clear(kpis);
      clear(charts);
      clear(errors);
    }
    renderEndpointHealth(endpointsTable, byEndpoint ? byEndpoint.data || [] : [], endpointMap, filter.endpoint_id);
    const until = sli ? sli.until : new Date().toISOString();
    status.textContent = '';
    put(status, 'Updated ', timeElement(until), sli ? ` · ${sli.granularity === 'minute' ? 'per minute' : 'per hour'}` : '');
  }
  load();
}

function fillEndpointOptions(select, endpoints, selected) {
  const options = [['', 'All endpoints'], ...endpoints.map((endpoint) => [endpoint.endpoint_id, endpoint.description ? `${endpoint.description} — ${endpoint.url}` : endpoint.url])];
  if (selected && !options.some(([value]) => value === selected)) options.push([selected, `${selected} (deleted)`]);
  select.replaceChildren(...options.map(([value, label]) => h('option', { value, selected: value === selected, text: label })));
}

function fillTypeOptions(select, rows, selected) {
  const types = rows.map((row) => row.key).filter(Boolean).sort();
  if (selected && !types.includes(selected)) types.push(selected);
  select.replaceChildren(h('option', { value: '', text: 'All event types' }),
    ...types.map((type) => h('option', { value: type, selected: type === selected, text: type })));
}

function kpi(name, value, note, key, raw, tone) {
  return h('div', { class: ['kpi', 'card', tone ? `kpi-${tone}` : ''] },
    h('h2', { class: 'kpi-name', text: name }),
    h('p', { class: 'kpi-value', dataset: { kpi: key, value: raw === null || raw === undefined ? '' : String(raw) }, text: value }),
    h('p', { class: 'kpi-note', text: note }));
}

function renderKpis(container, totals, windowChoice) {
  const windowName = (WINDOWS.find(([value]) => value === windowChoice) || [null, windowChoice])[1].toLowerCase();
  const successTone = totals.success_rate === null ? null : totals.success_rate < FAILING_SUCCESS_RATE ? 'bad' : 'ok';
  const e2e = totals.end_to_end_latency_ms || {};
  const attempt = totals.attempt_latency_ms || {};
  put(clear(container), 
    kpi('Success rate', formatRate(totals.success_rate), `${formatCount(totals.successes)} of ${formatCount(totals.attempts)} attempts succeeded`, 'success-rate', totals.success_rate, successTone),
    kpi('p95 end-to-end latency', formatMs(e2e.p95), `from acceptance to delivery · p50 ${formatMs(e2e.p50)}, p99 ${formatMs(e2e.p99)}`, 'e2e-p95', e2e.p95),
    kpi('Dead-letter rate', formatRate(totals.dead_letter_rate), `${formatCount(totals.dead_letters)} dead letter${totals.dead_letters === 1 ? '' : 's'} of ${formatCount(totals.deliveries_concluded)} concluded deliveries`, 'dead-letter-rate', totals.dead_letter_rate, totals.dead_letters > 0 ? 'bad' : null),
    kpi('Attempts', formatCount(totals.attempts), windowName, 'attempts', totals.attempts),
    kpi('p95 attempt latency', formatMs(attempt.p95), `one HTTP request · p50 ${formatMs(attempt.p50)}, p99 ${formatMs(attempt.p99)}`, 'attempt-p95', attempt.p95));
}

function renderCharts(container, sli) {
  const { step, periods, points } = fillPeriods(sli);
  const pick = (read) => points.map((point) => (point ? read(point) : null));
  const when = (index) => periodFormat.format(new Date(periods[index]));
  const noAttempts = sli.totals.attempts ? null : 'No attempts in this window';
  const percent = (value) => `${Number(value.toFixed(2))} %`;
  const successValues = pick((point) => (point.success_rate === null ? null : point.success_rate * 100));
  const lowest = Math.min(100, ...successValues.filter((value) => value !== null));
  const successMin = lowest >= 90 ? 90 : lowest >= 50 ? 50 : 0;
  const deadLetterValues = pick((point) => (point.dead_letter_rate === null ? null : point.dead_letter_rate * 100));
  const pointAt = (index) => points[index];

  put(clear(container), 
    timeChart({
      title: 'Success rate', periods, step, kind: 'line', yMin: successMin, yMax: 100, yLabel: 'Success rate (%)',
      yFormat: percent, empty: noAttempts,
      reference: { value: FAILING_SUCCESS_RATE * 100, label: 'Failing below 95 %' },
      series: [{ name: 'Attempts that succeeded (%)', values: successValues, color: 0 }],
      tooltip: (index) => {
        const point = pointAt(index);
        return point
          ? `${when(index)}\nSuccess rate: ${formatRate(point.success_rate)}\n${formatCount(point.successes)} of ${formatCount(point.attempts)} attempts succeeded`
          : `${when(index)}\nNo attempts`;
      },
    }),
    timeChart({
      title: 'End-to-end latency', periods, step, kind: 'line', yLabel: 'Latency',
      yFormat: (value) => formatMs(value), empty: noAttempts,
      // p95 drawn last, on top of p50 where they meet.
      series: [
        { name: 'p50', values: pick((point) => (point.end_to_end_latency_ms || {}).p50 ?? null), color: 4, dashed: true },
        { name: 'p95', values: pick((point) => (point.end_to_end_latency_ms || {}).p95 ?? null), color: 1 },
      ],
      tooltip: (index) => {
        const point = pointAt(index);
        if (!point) return `${when(index)}\nNo attempts`;
        const latency = point.end_to_end_latency_ms || {};
        return `${when(index)}\nEnd-to-end latency p95: ${formatMs(latency.p95)}\np50: ${formatMs(latency.p50)} · p99: ${formatMs(latency.p99)}`;
      },
    }),
    timeChart({
      title: 'Dead-letter rate', periods, step, kind: 'line', yLabel: 'Dead letters (%)',
      yMax: niceMax(Math.max(1, ...deadLetterValues.filter((value) => value !== null))),
      yFormat: percent, empty: noAttempts,
      series: [{ name: 'Concluded deliveries dead-lettered (%)', values: deadLetterValues, color: 2 }],
      tooltip: (index) => {
        const point = pointAt(index);
        return point
          ? `${when(index)}\nDead-letter rate: ${formatRate(point.dead_letter_rate)}\n${formatCount(point.dead_letters)} dead letters of ${formatCount(point.deliveries_concluded)} concluded deliveries`
          : `${when(index)}\nNo attempts`;
      },
    }),
    timeChart({
      title: 'Volume', periods, step, kind: 'bars', yLabel: 'Attempts', integer: true, yFormat: (value) => formatCount(value), empty: noAttempts,
      series: [
        { name: 'Succeeded', values: pick((point) => point.successes), color: 0 },
        { name: 'Failed', values: pick((point) => Math.max(point.attempts - point.successes, 0)), color: 2 },
      ],
      tooltip: (index) => {
        const point = pointAt(index);
        return point
          ? `${when(index)}\n${formatCount(point.attempts)} attempts: ${formatCount(point.successes)} succeeded, ${formatCount(point.attempts - point.successes)} failed`
          : `${when(index)}\nNo attempts`;
      },
    }));
}

function renderErrors(container, errors) {
  const entries = Object.entries(errors).filter(([, count]) => count > 0).sort((a, b) => b[1] - a[1]);
  if (!entries.length) {
    clear(container).appendChild(h('p', { class: 'muted', text: 'No failed attempts in this window.' }));
    return;
  }
  clear(container).appendChild(h('table', { class: 'table compact' },
    h('thead', null, h('tr', null, h('th', { scope: 'col', text: 'Error class' }), h('th', { scope: 'col', class: 'number', text: 'Attempts' }))),
    h('tbody', null, entries.map(([errorClass, count]) =>
      h('tr', null, h('td', null, mono(errorClass)), h('td', { class: 'number', text: formatCount(count) }))))));
}

function renderEndpointHealth(container, rows, endpointMap, selectedId) {
  const seen = new Set(rows.map((row) => row.key));
  const entries = rows.map((row) => ({ row, endpoint: endpointMap.get(row.key) || null, id: row.key }));
  // An endpoint whose breaker is open is failing even without attempts in the window.
  for (const endpoint of endpointMap.values()) {
    if (!seen.has(endpoint.endpoint_id) && endpoint.health && endpoint.health.breaker_state === 'open') {
      entries.push({ row: null, endpoint, id: endpoint.endpoint_id });
    }
  }
  entries.sort((a, b) => (failing(b.row, b.endpoint) - failing(a.row, a.endpoint)) ||
    ((b.row ? b.row.attempts : 0) - (a.row ? a.row.attempts : 0)));
  if (!entries.length) {
    clear(container).appendChild(h('p', { class: 'muted', text: 'No endpoint had attempts in this window.' }));
    return;
  }
  const table = h('table', { class: 'table', id: 'endpoint-health' },
    h('caption', { class: 'visually-hidden', text: 'Endpoints, failing ones first' }),
    h('thead', null, h('tr', null, ['Endpoint', 'State', 'Breaker', 'Attempts', 'Success rate', 'Dead letters', 'p95 end-to-end']
      .map((name, index) => h('th', { scope: 'col', class: index >= 3 ? 'number' : null, text: name })))),
    h('tbody', null, entries.map(({ row, endpoint, id }) => {
      const isFailing = failing(row, endpoint);
      const breaker = endpoint && endpoint.health ? endpoint.health.breaker_state : null;
      return h('tr', {
        class: [isFailing ? 'row-failing' : '', id === selectedId ? 'row-selected' : ''],
        dataset: { endpointId: id }, 'aria-current': id === selectedId ? 'true' : null,
      },
        h('td', { class: 'endpoint-cell' }, endpointLink(id, endpoint ? endpoint.url : `${id} (deleted)`)),
        h('td', null, isFailing ? badge('failing', 'bad') : endpoint && !endpoint.enabled ? badge('disabled', 'bad') : badge('healthy', 'ok')),
        h('td', null, breaker ? statusBadge(breaker) : h('span', { class: 'muted', text: '—' })),
        h('td', { class: 'number', text: row ? formatCount(row.attempts) : '0' }),
        h('td', { class: 'number', text: row ? formatRate(row.success_rate) : '—' }),
        h('td', { class: 'number', text: row ? formatCount(row.dead_letters) : '—' }),
        h('td', { class: 'number', text: row ? formatMs((row.end_to_end_latency_ms || {}).p95) : '—' }));
    })));
  clear(container).appendChild(h('div', { class: 'table-wrap' }, table));
}

// ------------------------------------------------------------------ endpoints

function breakerBadge(health) {
  if (!health || !health.breaker_state) return badge('unknown', 'neutral', 'No health recorded yet');
  const state = health.breaker_state;
  const until = health.breaker_open_until ? `open until ${dateTimeFormat.format(new Date(health.breaker_open_until))} (${health.breaker_open_until})` : null;
  return h('span', { class: 'breaker' }, statusBadge(state, until), state !== 'closed' && health.breaker_open_until
    ? h('span', { class: 'muted small' }, ' until ', timeElement(health.breaker_open_until)) : null);
}

function streakText(health) {
  if (!health) return '—';
  if (health.failure_streak > 0) return `${formatCount(health.failure_streak)} failure${health.failure_streak === 1 ? '' : 's'} in a row`;
  if (health.success_streak > 0) return `${formatCount(health.success_streak)} success${health.success_streak === 1 ? '' : 'es'} in a row`;
  return '—';
}

/** The objective's error budget: how much is left, and the burn alert firing, if any. */
function budgetCell(endpoint) {
  const slo = endpoint.slo;
  if (!slo) return h('span', { class: 'muted', text: 'no objective' });
  const objective = `${formatRate(slo.success_rate)} over ${slo.window_days} day${slo.window_days === 1 ? '' : 's'}`;
  const status = slo.status;
  if (!status) return h('span', { class: 'muted', text: `${objective}, not evaluated yet` });
  const left = status.budget_remaining;
  const tone = status.alert ? 'bad' : left < 0.25 ? 'warn' : 'ok';
  const leftText = left < 0 ? `overspent ${formatRate(-left)}` : `${formatRate(Math.min(left, 1))} left`;
  return h('div', { class: 'budget' },
    badge(leftText, tone, `Error budget of the objective ${objective}: ${formatCount(status.failures)} failed of ${formatCount(status.attempts)} attempts`),
    status.alert ? [' ', badge(`${status.alert} burn`, 'bad', `Burning ${status.alert === 'fast' ? '14.4' : '6'}× faster than sustainable since ${status.alert_since}`)] : null,
    h('p', { class: 'small muted', text: objective }));
}

/** Burn rates over the alert windows, e.g. "1 h 100× · 5 min 100× · 6 h 12× · 30 min 40×". */
function burnRates(status) {
  const times = (rate) => `${rate >= 10 ? rate.toFixed(0) : rate.toFixed(1)}×`;
  return [['1 h', status.burn_rate_1h], ['5 min', status.burn_rate_5m], ['6 h', status.burn_rate_6h], ['30 min', status.burn_rate_30m]]
    .map(([window, rate]) => `${window} ${times(rate)}`).join(' · ');
}

function enabledCell(endpoint) {
  return h('div', null, endpoint.enabled ? badge('enabled', 'ok') : badge('disabled', 'bad'),
    endpoint.disabled_reason ? h('p', { class: 'small', text: endpoint.disabled_reason }) : null);
}

function renderEndpoints(page) {
  const body = h('div', null, h('p', { class: 'muted', text: 'Loading…' }));
  const refresh = button('Refresh', () => load(), { class: 'secondary' });
  put(main, pageHeader('Endpoints', refresh), body);
  if (auth.session.credential === 'api_key') put(main, portalLinkForm());

  async function load() {
    try {
      const endpoints = await loadEndpoints(true);
      if (!page.alive()) return;
      if (!endpoints.length) {
        clear(body).appendChild(h('p', { class: 'muted', text: 'This tenant has no endpoints yet (POST /v1/webhook_endpoints makes one).' }));
        return;
      }
      const sorted = [...endpoints].sort((a, b) =>
        (Number(b.health && b.health.breaker_state === 'open') - Number(a.health && a.health.breaker_state === 'open')) ||
        (Number(a.enabled) - Number(b.enabled)) || a.url.localeCompare(b.url));
      clear(body).appendChild(h('div', { class: 'table-wrap card' }, h('table', { class: 'table', id: 'endpoints' },
        h('caption', { class: 'visually-hidden', text: 'The tenant\'s endpoints with their health' }),
        h('thead', null, h('tr', null, ['Endpoint', 'Status', 'Breaker', 'Error budget', 'Last success', 'Last failure', 'Streak', 'Event types']
          .map((name) => h('th', { scope: 'col', text: name })))),
        h('tbody', null, sorted.map((endpoint) => {
          const health = endpoint.health || null;
          return h('tr', { dataset: { endpointId: endpoint.endpoint_id }, class: health && health.breaker_state === 'open' ? 'row-failing' : null },
            h('td', { class: 'endpoint-cell' },
              h('a', { href: `#/endpoints/${encodeURIComponent(endpoint.endpoint_id)}`, class: 'url', text: endpoint.url }),
              endpoint.description ? h('p', { class: 'small', text: endpoint.description }) : null,
              h('p', { class: 'small mono muted', text: endpoint.endpoint_id })),
            h('td', null, enabledCell(endpoint)),
            h('td', null, breakerBadge(health)),
            h('td', null, budgetCell(endpoint)),
            h('td', null, timeElement(health && health.last_success_at)),
            h('td', null, timeElement(health && health.last_failure_at),
              health && health.last_failure_class ? h('p', { class: 'small' }, mono(health.last_failure_class)) : null),
            h('td', { text: streakText(health) }),
            h('td', null, endpoint.events && endpoint.events.length
              ? h('ul', { class: 'plain' }, endpoint.events.map((type) => h('li', null, mono(type))))
              : h('span', { class: 'muted', text: 'all types' })));
        })))));
    } catch (error) {
      showProblem(body, error);
    }
  }
  load();
}

function portalLinkForm() {
  const expires = selectOf([['3600', '1 hour'], ['28800', '8 hours'], ['86400', '24 hours']], '3600', { id: 'portal-expires' });
  const readOnlyBox = h('input', { type: 'checkbox', id: 'portal-read-only', checked: true });
  const result = h('div', { role: 'status' });
  const create = h('button', { type: 'submit' }, 'Create portal link');
  const form = h('form', { class: 'controls' },
    field('Link works for', expires),
    h('div', { class: 'field field-check' }, readOnlyBox, h('label', { for: 'portal-read-only', text: 'Read-only (no replays)' })),
    h('div', { class: 'field field-button' }, create));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    create.disabled = true;
    clear(result);
    try {
      const created = await api('/v1/portal_sessions', {
        method: 'POST', body: { expires_in: Number(expires.value), read_only: readOnlyBox.checked },
      });
      const urlField = h('input', { type: 'text', id: 'portal-url', readonly: true, value: created.url, class: 'wide' });
      const copy = button('Copy', async () => {
        urlField.select();
        try {
          await navigator.clipboard.writeText(created.url);
          copy.textContent = 'Copied';
        } catch {
          copy.textContent = 'Select and copy';
        }
      }, { class: 'secondary' });
      put(clear(result), 
        h('div', { class: 'inline-field' }, field('Portal link', urlField), copy),
        h('p', { class: 'small' }, created.read_only ? 'Read-only; ' : 'May replay; ', 'works until ', timeElement(created.expires_at),
          '. Anyone with the link sees this tenant\'s deliveries: share it with one person.'));
    } catch (error) {
      showProblem(result, error);
    } finally {
      create.disabled = false;
    }
  });
  return h('section', { class: 'card', 'aria-labelledby': 'portal-title' },
    h('h2', { id: 'portal-title', text: 'Share a portal link' }),
    h('p', { class: 'muted', text: 'A portal link opens this dashboard for the tenant without the API key, until it expires.' }),
    form, result);
}

function jsonBlock(value) {
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
}

function renderEndpoint(page, params, endpointId) {
  const body = h('div', null, h('p', { class: 'muted', text: 'Loading…' }));
  put(main, pageHeader('Endpoint'), body);
  (async () => {
    try {
      const [endpoint, attempts] = await Promise.all([
        api(`/v1/webhook_endpoints/${encodeURIComponent(endpointId)}`),
        api('/v1/deliveries', { params: { endpoint_id: endpointId, limit: 25 } }),
      ]);
      if (!page.alive()) return;
      const health = endpoint.health || null;
      main.querySelector('h1').textContent = `Endpoint ${endpoint.url}`;
      put(clear(body), 
        h('p', { class: 'links' },
          h('a', { href: `#/overview?endpoint_id=${encodeURIComponent(endpoint.endpoint_id)}`, text: 'Service levels of this endpoint' }),
          h('a', { href: `#/dead-letters?endpoint_id=${encodeURIComponent(endpoint.endpoint_id)}`, text: 'Its dead letters' })),
        h('div', { class: 'columns' },
          h('section', { class: 'card grow', 'aria-labelledby': 'endpoint-settings' },
            h('h2', { id: 'endpoint-settings', text: 'Settings' }),
            definitionList([
              ['URL', h('span', { class: 'url', text: endpoint.url })],
              ['Endpoint id', mono(endpoint.endpoint_id)],
              ['Description', endpoint.description || h('span', { class: 'muted', text: '—' })],
              ['Status', enabledCell(endpoint)],
              ['Event types', endpoint.events && endpoint.events.length ? endpoint.events.join(', ') : 'all types'],
              ['Ordered', endpoint.ordered ? 'yes: one delivery at a time, in ingest order' : 'no'],
              ['Rate limit', endpoint.rate_limit ? jsonBlock(endpoint.rate_limit) : 'none'],
              ['Retry policy', endpoint.retry_policy ? jsonBlock(endpoint.retry_policy) : 'service default'],
              ['Created', timeElement(endpoint.created_at)],
              ['Updated', timeElement(endpoint.updated_at)],
            ])),
          h('section', { class: 'card grow', 'aria-labelledby': 'endpoint-health' },
            h('h2', { id: 'endpoint-health', text: 'Health' }),
            definitionList([
              ['Circuit breaker', breakerBadge(health)],
              ['Last attempt', timeElement(health && health.last_attempt_at)],
              ['Last success', timeElement(health && health.last_success_at)],
              ['Last failure', h('span', null, timeElement(health && health.last_failure_at),
                health && health.last_failure_class ? [' · ', mono(health.last_failure_class)] : null)],
              ['Streak', streakText(health)],
              ['Error budget', budgetCell(endpoint)],
              endpoint.slo && endpoint.slo.status
                ? ['Burn rate', h('span', { title: 'Failure rate over each window divided by what the objective allows; 1× spends the budget exactly over its window', text: burnRates(endpoint.slo.status) })]
                : null,
            ]))),
        h('section', { class: 'card', 'aria-labelledby': 'endpoint-attempts' },
          h('h2', { id: 'endpoint-attempts', text: 'Latest attempts' }),
          attemptsTable(attempts.data || [], { showEndpoint: false })));
    } catch (error) {
      if (error instanceof ApiProblem && error.status === 404) {
        clear(body).appendChild(alertBox(problemText(error)));
      } else {
        showProblem(body, error);
      }
    }
  })();
}

function attemptsTable(attempts, { showEndpoint = true, endpointMap = new Map(), actions = null } = {}) {
  if (!attempts.length) return h('p', { class: 'muted', text: 'No attempts.' });
  const headers = ['Started', 'Event', showEndpoint ? 'Endpoint' : null, 'Attempt', 'Outcome', 'HTTP', 'Latency', 'Error', actions ? 'Action' : null].filter(Boolean);
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
    h('thead', null, h('tr', null, headers.map((name) => h('th', { scope: 'col', text: name })))),
    h('tbody', null, attempts.map((attempt) => {
      const endpoint = endpointMap.get(attempt.endpoint_id);
      return h('tr', { dataset: { attemptId: attempt.attempt_id } },
        h('td', { class: 'nowrap' }, timeElement(attempt.started_at)),
        h('td', { class: 'nowrap' }, eventLink(attempt.event_id, true)),
        showEndpoint ? h('td', { class: 'endpoint-cell' }, endpointLink(attempt.endpoint_id, endpoint ? endpoint.url : null)) : null,
        h('td', { text: `#${attempt.attempt_number}` }),
        h('td', null, statusBadge(attempt.outcome)),
        h('td', { text: attempt.http_status ?? '—' }),
        h('td', { text: formatMs(attempt.latency_ms) }),
        h('td', { class: 'error-cell' }, attempt.error_code ? mono(attempt.error_code) : null,
          attempt.error_message ? h('span', { class: 'small', text: ` ${attempt.error_message}` }) : null),
        actions ? h('td', null, actions(attempt)) : null);
    }))));
}

// ------------------------------------------------------------------ events list

const EVENT_STATUSES = [['', 'Any status'], ['pending', 'pending'], ['delivering', 'delivering'], ['delivered', 'delivered'], ['failed', 'failed']];

function renderEvents(page, params) {
  const filter = { status: params.get('status') || '', type: params.get('type') || '' };
  const statusSelect = selectOf(EVENT_STATUSES, filter.status, { id: 'events-status' });
  const typeInput = h('input', { id: 'events-type', type: 'text', value: filter.type, placeholder: 'order.created, order.paid', spellcheck: 'false', autocomplete: 'off' });
  const form = h('form', { class: 'controls' }, field('Status', statusSelect), field('Event type', typeInput),
    h('div', { class: 'field field-button' }, h('button', { type: 'submit' }, 'Show')));
  const list = h('div', { class: 'card' });
  const more = h('div', { class: 'more' });
  put(main, pageHeader('Events'), form, list, more);

  let rows;
  let cursor = null;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    filter.status = statusSelect.value;
    filter.type = typeInput.value.trim();
    replaceHashQuery('/events', filter);
    loadPage(true);
  });

  async function loadPage(first) {
    if (first) {
      cursor = null;
      clear(list).appendChild(h('p', { class: 'muted', text: 'Loading…' }));
      rows = null;
    }
    clear(more);
    try {
      const answer = await api('/v1/events', { params: { status: filter.status, type: filter.type, cursor, limit: 50 } });
      if (!page.alive()) return;
      if (!rows) {
        if (!answer.data.length) {
          clear(list).appendChild(h('p', { class: 'muted', text: 'No events match.' }));
          return;
        }
        rows = h('tbody');
        clear(list).appendChild(h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'events' },
          h('thead', null, h('tr', null, ['Accepted', 'Event id', 'Type', 'Status', 'Trace id'].map((name) => h('th', { scope: 'col', text: name })))),
          rows)));
      }
      for (const event of answer.data) {
        rows.appendChild(h('tr', null, h('td', { class: 'nowrap' }, timeElement(event.accepted_at)), h('td', null, eventLink(event.event_id)),
          h('td', null, mono(event.type)), h('td', null, statusBadge(event.status)), h('td', { class: 'mono small muted', text: event.trace_id })));
      }
      cursor = answer.next_cursor;
      if (cursor) more.appendChild(button('Load older events', () => loadPage(false), { class: 'secondary' }));
      else more.appendChild(h('p', { class: 'muted small', text: 'No older events.' }));
    } catch (error) {
      showProblem(first ? list : more, error);
    }
  }
  loadPage(true);
}

// ------------------------------------------------------------------ event page

const REASONS = {
  type_filter: 'filtered out by its event types',
  disabled: 'endpoint disabled',
  not_targeted: 'not in target_endpoints',
  created_later: 'created after the event',
  deleted: 'endpoint deleted',
};

const WAITING = {
  nothing: 'Nothing to wait for',
  in_flight: 'Attempt in flight',
  retry: 'Waiting for the next retry',
  breaker_open: 'Held: circuit breaker open',
  rate_limited: 'Held: rate limit',
  retry_budget: 'Held: retry budget',
  scheduled: 'Scheduled (deliver_after)',
  ordered_lane: 'Waiting behind earlier events (ordered endpoint)',
};

function explanationBlock(explanation) {
  if (!explanation) return h('p', { class: 'muted small', text: 'No explanation available.' });
  const waiting = explanation.waiting_for;
  return h('div', { class: 'explanation' },
    h('p', null, explanation.routed ? badge('routed', 'ok') : badge(`not routed: ${REASONS[explanation.reason] || humanize(explanation.reason || 'unknown')}`, 'neutral'),
      ' ', explanation.detail || ''),
    waiting ? h('p', null, badge(WAITING[waiting.kind] || humanize(waiting.kind), waiting.kind === 'nothing' ? 'neutral' : 'info'),
      waiting.until ? [' until ', timeElement(waiting.until)] : null,
      waiting.detail ? ` — ${waiting.detail}` : null) : null);
}

function timelineList(attempts, label) {
  if (!attempts.length) return h('p', { class: 'muted timeline-empty', text: 'No attempt yet.' });
  return h('ol', { class: 'timeline', 'aria-label': label }, attempts.map((attempt) =>
    h('li', { class: ['timeline-item', `outcome-${attempt.outcome}`], dataset: { attemptId: attempt.attempt_id, outcome: attempt.outcome } },
      h('div', { class: 'timeline-head' },
        h('span', { class: 'attempt-number', text: `Attempt ${attempt.attempt_number}` }),
        timeElement(attempt.started_at),
        statusBadge(attempt.outcome),
        h('span', { class: 'metric', text: attempt.http_status !== null && attempt.http_status !== undefined ? `HTTP ${attempt.http_status}` : 'no HTTP answer' }),
        h('span', { class: 'metric', title: 'Attempt latency', text: formatMs(attempt.latency_ms) })),
      attempt.error_code || attempt.error_message
        ? h('p', { class: 'timeline-error' }, attempt.error_code ? mono(attempt.error_code) : null, attempt.error_message ? ` ${attempt.error_message}` : null)
        : null,
      h('p', { class: 'timeline-detail small muted' },
        attempt.response_body_hash
          ? h('span', null, 'Response SHA-256 ', mono(`${attempt.response_body_hash.slice(0, 16)}…`, attempt.response_body_hash))
          : h('span', { text: 'No response body recorded' }),
        attempt.next_attempt_at ? h('span', null, ' · next attempt ', timeElement(attempt.next_attempt_at)) : null,
        h('span', null, ' · scheduled ', timeElement(attempt.scheduled_at), ' · finished ', timeElement(attempt.finished_at))))));
}

async function loadEventData(eventId) {
  const [event, explain, attempts, endpoints] = await Promise.allSettled([
    api(`/v1/events/${encodeURIComponent(eventId)}`),
    api(`/v1/events/${encodeURIComponent(eventId)}/explain`),
    fetchAll('/v1/deliveries', { event_id: eventId, limit: 250 }),
    loadEndpoints(),
  ]);
  for (const result of [event, explain, attempts, endpoints]) {
    if (result.status === 'rejected' && result.reason instanceof SignedOut) throw result.reason;
  }
  if (event.status === 'rejected') throw event.reason;
  return {
    event: event.value,
    explain: explain.status === 'fulfilled' ? explain.value : null,
    explainError: explain.status === 'rejected' ? explain.reason : null,
    attempts: attempts.status === 'fulfilled' ? attempts.value.rows : [],
    attemptsError: attempts.status === 'rejected' ? attempts.reason : null,
    endpoints: endpoints.status === 'fulfilled' ? endpoints.value : [],
  };
}

function renderEvent(page, params, eventId) {
  const summary = h('div', null, h('p', { class: 'muted', text: 'Loading…' }));
  const replayStatus = h('div', { class: 'replay-status', role: 'status', tabindex: '-1' });
  const deliveries = h('div');
  const payload = h('div');
  const actions = h('div', { class: 'page-actions' });
  put(main, pageHeader('Event', actions), summary, replayStatus, deliveries, payload);

  let data = null;
  let watch = null;
  let watching = false;

  async function refresh() {
    data = await loadEventData(eventId);
    if (!page.alive()) return;
    drawSummary();
    drawDeliveries();
  }

  function drawSummary() {
    const { event } = data;
    main.querySelector('h1').textContent = `Event ${event.type}`;
    clear(summary).appendChild(h('section', { class: 'card', 'aria-labelledby': 'event-summary' },
      h('h2', { id: 'event-summary', class: 'visually-hidden', text: 'Summary' }),
      definitionList([
        ['Event id', mono(event.event_id)],
        ['Type', mono(event.type)],
        ['Status', statusBadge(event.status)],
        ['Accepted', timeElement(event.accepted_at)],
        ['Trace id', mono(event.trace_id)],
        event.idempotency_key ? ['Idempotency key', mono(event.idempotency_key)] : null,
      ])));
    clear(payload).appendChild(h('section', { class: 'card', 'aria-labelledby': 'event-payload' },
      h('h2', { id: 'event-payload', text: 'Payload' }),
      h('pre', { class: 'json', tabindex: '0', 'aria-label': 'Payload (JSON)' }, JSON.stringify(event.payload, null, 2))));
    clear(actions);
    if (readOnly()) {
      actions.appendChild(badge('read-only view: replay is not available', 'warn'));
    } else if (event.deliveries && event.deliveries.length) {
      actions.appendChild(button('Replay all deliveries', () => replay(null), { class: 'replay', id: 'replay-all', disabled: watching }));
    }
  }

  function drawDeliveries() {
    const { event, explain, explainError, attempts, attemptsError, endpoints } = data;
    const endpointMap = endpointsById(endpoints);
    const explanations = new Map(((explain && explain.endpoints) || []).map((entry) => [entry.endpoint_id, entry]));
    const deliveryMap = new Map((event.deliveries || []).map((delivery) => [delivery.endpoint_id, delivery]));
    const attemptsByEndpoint = new Map();
    for (const attempt of attempts) {
      if (!attemptsByEndpoint.has(attempt.endpoint_id)) attemptsByEndpoint.set(attempt.endpoint_id, []);
      attemptsByEndpoint.get(attempt.endpoint_id).push(attempt);
    }
    for (const list of attemptsByEndpoint.values()) {
      list.sort((a, b) => (a.attempt_number - b.attempt_number) || a.started_at.localeCompare(b.started_at));
    }
    const routedIds = new Set([...deliveryMap.keys(), ...attemptsByEndpoint.keys()]);
    for (const [endpointId, entry] of explanations) if (entry.routed) routedIds.add(endpointId);
    const notRouted = [...explanations.values()].filter((entry) => !routedIds.has(entry.endpoint_id));
    const urlOf = (endpointId) => (explanations.get(endpointId) || {}).url || (endpointMap.get(endpointId) || {}).url || null;

    const sections = [...routedIds].sort((a, b) => (urlOf(a) || a).localeCompare(urlOf(b) || b)).map((endpointId) => {
      const delivery = deliveryMap.get(endpointId);
      const url = urlOf(endpointId);
      const headingId = uniqueId('delivery');
      const list = attemptsByEndpoint.get(endpointId) || [];
      return h('section', { class: 'card delivery', dataset: { endpointId }, 'aria-labelledby': headingId },
        h('div', { class: 'delivery-head' },
          h('div', null,
            h('h3', { id: headingId }, url ? h('span', { class: 'url', text: url }) : mono(endpointId)),
            h('p', { class: 'small muted' }, 'Endpoint ', endpointLink(endpointId))),
          h('div', { class: 'delivery-state' },
            delivery ? statusBadge(delivery.status) : badge('no delivery', 'neutral'),
            delivery ? h('span', { class: 'small', text: `${formatCount(delivery.attempt_count)} attempt${delivery.attempt_count === 1 ? '' : 's'}` }) : null,
            delivery && delivery.next_attempt_at ? h('span', { class: 'small' }, 'next ', timeElement(delivery.next_attempt_at)) : null,
            !readOnly() && delivery ? button('Replay', () => replay(endpointId), {
              class: 'replay secondary', 'aria-label': `Replay the delivery to ${url || endpointId}`, disabled: watching,
            }) : null)),
        h('h4', { class: 'subhead', text: 'Why' }),
        explainError ? alertBox(`Explanation unavailable: ${problemText(explainError)}`, 'warn') : explanationBlock(explanations.get(endpointId)),
        h('h4', { class: 'subhead', text: 'Attempts' }),
        timelineList(list, `Attempts to ${url || endpointId}`));
    });

    put(clear(deliveries), 
      h('h2', { text: 'Deliveries' }),
      attemptsError ? alertBox(`Attempt history unavailable: ${problemText(attemptsError)}`) : null,
      sections.length ? sections : h('p', { class: 'muted card', text: 'This event was routed to no endpoint.' }),
      notRouted.length ? h('section', { class: 'card', 'aria-labelledby': 'not-routed' },
        h('h3', { id: 'not-routed', text: 'Endpoints that did not get this event' }),
        h('ul', { class: 'not-routed' }, notRouted.map((entry) => h('li', { dataset: { endpointId: entry.endpoint_id } },
          h('span', { class: 'url', text: entry.url || entry.endpoint_id }), ' ', explanationBlock(entry))))) : null);
  }

  async function replay(endpointId) {
    const before = new Map();
    for (const attempt of data.attempts) before.set(attempt.endpoint_id, (before.get(attempt.endpoint_id) || 0) + 1);
    for (const control of main.querySelectorAll('button.replay')) control.disabled = true;
    clear(replayStatus).appendChild(alertBox('Asking Herald to replay…', 'info'));
    let accepted;
    try {
      accepted = await api(`/v1/events/${encodeURIComponent(eventId)}/replay`, { method: 'POST', body: endpointId ? { endpoint_id: endpointId } : {} });
    } catch (error) {
      if (!page.alive()) return;
      showProblem(replayStatus, error);
      for (const control of main.querySelectorAll('button.replay')) control.disabled = false;
      return;
    }
    if (!page.alive()) return;
    const targets = accepted.endpoint_ids || (endpointId ? [endpointId] : []);
    const count = targets.length;
    clear(replayStatus).appendChild(alertBox(`Replay requested for ${count} deliver${count === 1 ? 'y' : 'ies'}; watching for the new attempt…`, 'info'));
    replayStatus.focus({ preventScroll: true });
    const startedAt = Date.now();
    const watchId = {};
    watch = watchId;
    watching = true;
    const finish = (message, tone) => {
      watching = false;
      clear(replayStatus).appendChild(alertBox(message, tone));
      for (const control of main.querySelectorAll('button.replay')) control.disabled = false;
    };
    const poll = async () => {
      if (watch !== watchId) return;
      try {
        await refresh();
      } catch (error) {
        if (error instanceof SignedOut || !page.alive()) return;
      }
      if (!page.alive() || watch !== watchId) return;
      const counts = new Map();
      for (const attempt of data.attempts) counts.set(attempt.endpoint_id, (counts.get(attempt.endpoint_id) || 0) + 1);
      const done = targets.every((target) => (counts.get(target) || 0) > (before.get(target) || 0));
      if (done) {
        finish(`The replayed attempt${count === 1 ? ' is' : 's are'} in the timeline below.`, 'success');
        return;
      }
      if (Date.now() - startedAt >= 30_000) {
        finish('No new attempt after 30 s: the delivery may be waiting (see "Why" below). Reload the page later to see it.', 'warn');
        return;
      }
      page.later(poll, 1000);
    };
    page.later(poll, 1000);
  }

  refresh().catch((error) => {
    if (!page.alive()) return;
    if (error instanceof ApiProblem && error.status === 404) {
      clear(summary).appendChild(alertBox(`${problemText(error)} (an event just accepted appears within a second).`));
    } else {
      showProblem(summary, error);
    }
  });
}

// ------------------------------------------------------------------ dead letters

function renderDeadLetters(page, params) {
  const filter = {
    endpoint_id: params.get('endpoint_id') || '',
    since: params.get('since') || '',
    until: params.get('until') || '',
    pending: params.get('pending') === '1' ? '1' : '',
  };
  const endpointSelect = selectOf([['', 'All endpoints']], '', { id: 'dead-endpoint' });
  const sinceInput = h('input', { id: 'dead-since', type: 'datetime-local', value: isoToLocalInput(filter.since) });
  const untilInput = h('input', { id: 'dead-until', type: 'datetime-local', value: isoToLocalInput(filter.until) });
  const pendingBox = h('input', { type: 'checkbox', id: 'dead-pending', checked: filter.pending === '1' });
  const form = h('form', { class: 'controls', 'aria-label': 'Filter' },
    field('Endpoint', endpointSelect), field('Since (local time)', sinceInput), field('Until (local time)', untilInput),
    h('div', { class: 'field field-check' }, pendingBox, h('label', { for: 'dead-pending', text: 'Only those still undelivered' })),
    h('div', { class: 'field field-button' }, h('button', { type: 'submit' }, 'Show')));
  const list = h('div', { class: 'card' }, h('p', { class: 'muted', text: 'Loading…' }));
  const more = h('div', { class: 'more' });
  const bulk = h('div');
  put(main, pageHeader('Dead letters'),
    h('p', { class: 'muted', text: 'Deliveries that ran out of retries or passed their deadline (outcome dead_lettered or expired), newest first.' }),
    form, bulk, list, more);

  let endpointMap = new Map();
  loadEndpoints().then((endpoints) => {
    if (!page.alive()) return;
    endpointMap = endpointsById(endpoints);
    fillEndpointOptions(endpointSelect, endpoints, filter.endpoint_id);
    drawBulk();
  }).catch((error) => showProblem(bulk, error));

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    filter.endpoint_id = endpointSelect.value;
    filter.since = localInputToIso(sinceInput.value) || '';
    filter.until = localInputToIso(untilInput.value) || '';
    filter.pending = pendingBox.checked ? '1' : '';
    replaceHashQuery('/dead-letters', filter);
    drawBulk();
    loadPage(true);
  });

  let rows = null;
  let cursor = null;
  async function loadPage(first) {
    if (first) {
      cursor = null;
      rows = null;
      clear(list).appendChild(h('p', { class: 'muted', text: 'Loading…' }));
    }
    clear(more);
    try {
      const answer = await api('/v1/deliveries', {
        params: {
          outcome: 'dead_lettered,expired', endpoint_id: filter.endpoint_id, since: filter.since, until: filter.until,
          status: filter.pending ? 'failed,dead_lettered,expired' : '', cursor, limit: 50,
        },
      });
      if (!page.alive()) return;
      if (!rows) {
        if (!answer.data.length) {
          clear(list).appendChild(h('p', { class: 'muted', id: 'dead-letters-empty', text: 'No dead letters match. 🎉' }));
          return;
        }
        const table = attemptsTable(answer.data, { endpointMap, actions: readOnly() ? null : replayOneAction });
        rows = table.querySelector('tbody');
        clear(list).appendChild(table);
        table.querySelector('table').id = 'dead-letters';
      } else {
        const extra = attemptsTable(answer.data, { endpointMap, actions: readOnly() ? null : replayOneAction });
        rows.append(...extra.querySelectorAll('tbody > tr'));
      }
      cursor = answer.next_cursor;
      if (cursor) more.appendChild(button('Load older dead letters', () => loadPage(false), { class: 'secondary' }));
    } catch (error) {
      showProblem(first ? list : more, error);
    }
  }

  function replayOneAction(attempt) {
    const control = button('Replay', async () => {
      control.disabled = true;
      try {
        await api(`/v1/events/${encodeURIComponent(attempt.event_id)}/replay`, { method: 'POST', body: { endpoint_id: attempt.endpoint_id } });
        control.replaceWith(h('span', { class: 'small', role: 'status' }, 'Replay requested · ', eventLink(attempt.event_id)));
      } catch (error) {
        control.disabled = false;
        if (!(error instanceof SignedOut)) control.after(h('span', { class: 'small error-text', role: 'alert', text: ` ${problemText(error)}` }));
      }
    }, { class: 'secondary small-button', 'aria-label': `Replay event ${attempt.event_id} to this endpoint` });
    return control;
  }

  function drawBulk() {
    if (readOnly()) {
      clear(bulk).appendChild(alertBox('Read-only view: replay is not available.', 'info'));
      return;
    }
    const statusBoxes = [['dead_lettered', 'dead-lettered', true], ['expired', 'expired', true], ['failed', 'failed', true]].map(([value, label, checked]) => {
      const id = `bulk-status-${value}`;
      return { value, element: h('span', { class: 'check' }, h('input', { type: 'checkbox', id, value, checked }), h('label', { for: id, text: label })) };
    });
    const confirmArea = h('div', { role: 'status' });
    const start = button('Replay matching deliveries…', () => askConfirmation(), { class: 'replay' });
    const scope = describeScope();
    clear(bulk).appendChild(h('section', { class: 'card bulk', 'aria-labelledby': 'bulk-title' },
      h('h2', { id: 'bulk-title', text: 'Bulk replay' }),
      h('p', { class: 'small' }, 'Attempts again every delivery to ', h('strong', { text: scope.endpoint }),
        ' for events accepted ', h('strong', { text: scope.range }),
        ' (the endpoint and times of the filter above: change them and press Show first) whose delivery is now:'),
      h('div', { class: 'bulk-row' },
        h('fieldset', { class: 'checks' }, h('legend', { class: 'visually-hidden', text: 'Delivery statuses to replay' }),
          statusBoxes.map((box) => box.element)),
        start),
      confirmArea));

    function askConfirmation() {
      const statuses = statusBoxes.map((box) => box.element.querySelector('input')).filter((input) => input.checked).map((input) => input.value);
      if (!statuses.length) {
        clear(confirmArea).appendChild(alertBox('Choose at least one status to replay.'));
        return;
      }
      const yes = button('Yes, replay them', () => run(statuses, null), { class: 'danger', id: 'bulk-confirm' });
      const no = button('Cancel', () => { clear(confirmArea); start.disabled = false; start.focus(); }, { class: 'secondary' });
      start.disabled = true;
      clear(confirmArea).appendChild(h('div', { class: 'confirm', role: 'alertdialog', 'aria-labelledby': 'bulk-confirm-text' },
        h('p', { id: 'bulk-confirm-text' }, 'Replay every ', h('strong', { text: statuses.map(humanize).join(', ') }),
          ' delivery to ', h('strong', { text: scope.endpoint }), ' for events accepted ', h('strong', { text: scope.range }),
          '? Receivers get these deliveries again (up to 100 events per batch).'),
        h('p', { class: 'buttons' }, yes, no)));
      yes.focus();
    }

    async function run(statuses, cursorValue, totals = { events: 0, deliveries: 0 }) {
      clear(confirmArea).appendChild(alertBox('Replaying…', 'info'));
      const body = { status: statuses };
      if (filter.endpoint_id) body.endpoint_id = filter.endpoint_id;
      if (filter.since) body.since = filter.since;
      if (filter.until) body.until = filter.until;
      if (cursorValue) body.cursor = cursorValue;
      try {
        const result = await api('/v1/deliveries/replay', { method: 'POST', body });
        if (!page.alive()) return;
        totals.events += result.events;
        totals.deliveries += result.deliveries;
        const summaryText = `Replay requested: ${formatCount(totals.events)} event${totals.events === 1 ? '' : 's'}, ${formatCount(totals.deliveries)} deliver${totals.deliveries === 1 ? 'y' : 'ies'}.`;
        clear(confirmArea).appendChild(alertBox(summaryText, 'success'));
        confirmArea.dataset.events = String(totals.events);
        confirmArea.dataset.deliveries = String(totals.deliveries);
        if (result.next_cursor) {
          confirmArea.appendChild(h('p', null, 'More deliveries match. ',
            button('Replay the next batch', () => run(statuses, result.next_cursor, totals), { class: 'replay' })));
        } else {
          start.disabled = false;
        }
      } catch (error) {
        start.disabled = false;
        showProblem(confirmArea, error);
      }
    }
  }

  function describeScope() {
    const endpoint = filter.endpoint_id ? ((endpointMap.get(filter.endpoint_id) || {}).url || filter.endpoint_id) : 'every endpoint';
    const from = filter.since ? dateTimeFormat.format(new Date(filter.since)) : null;
    const to = filter.until ? dateTimeFormat.format(new Date(filter.until)) : null;
    const range = from && to ? `from ${from} until ${to}` : from ? `since ${from}` : to ? `before ${to}` : 'at any time';
    return { endpoint, range };
  }

  loadPage(true);
}

// ------------------------------------------------------------------ signature verifier (never calls Herald)

const TOLERANCE_SECONDS = 300;

function decodeBase64(text) {
  const cleaned = text.trim().replace(/-/g, '+').replace(/_/g, '/');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(cleaned) || cleaned.length % 4 === 1) return null;
  const padded = cleaned + '='.repeat((4 - (cleaned.length % 4)) % 4);
  try {
    const binary = atob(padded);
    return Uint8Array.from(binary, (character) => character.charCodeAt(0));
  } catch {
    return null;
  }
}

function encodeBase64(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Same length and same bytes, looking at every byte whatever the first difference. */
function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let index = 0; index < a.length; index += 1) difference |= a[index] ^ b[index];
  return difference === 0;
}

/** `name: value` lines (a raw header block, as copied from a request log) into a map. */
function parseHeaderBlock(text) {
  const headers = new Map();
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return headers;
}

async function hmacSha256(keyBytes, text) {
  const key = await crypto.subtle.importKey('raw', keyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(text)));
}

/**
 * Verifies a Standard Webhooks signature and explains the result: `{ ok, problems: [..],
 * notes: [..] }`. `now` is Unix seconds.
 */
async function verifySignature({ secret, id, timestamp, signature, body }, now) {
  const problems = [];
  const notes = [];
  let keyBytes = null;
  const trimmedSecret = secret.trim();
  if (!trimmedSecret) {
    problems.push({ kind: 'secret', text: 'Malformed secret: paste the endpoint\'s signing secret (whsec_…).' });
  } else if (!trimmedSecret.startsWith('whsec_')) {
    problems.push({ kind: 'secret', text: 'Malformed secret: it must start with whsec_ followed by base64.' });
  } else {
    keyBytes = decodeBase64(trimmedSecret.slice('whsec_'.length));
    if (!keyBytes || keyBytes.length === 0) {
      problems.push({ kind: 'secret', text: 'Malformed secret: the part after whsec_ is not valid base64.' });
      keyBytes = null;
    } else if (keyBytes.length < 24 || keyBytes.length > 64) {
      notes.push(`The secret decodes to ${keyBytes.length} bytes; Herald's secrets have 24 to 64.`);
    }
  }
  const missing = [['webhook-id', id], ['webhook-timestamp', timestamp], ['webhook-signature', signature]]
    .filter(([, value]) => !value.trim()).map(([name]) => name);
  if (missing.length) problems.push({ kind: 'missing', text: `Missing header${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}.` });

  let skew = null;
  if (timestamp.trim()) {
    if (!/^\d+$/.test(timestamp.trim())) {
      problems.push({ kind: 'timestamp', text: `webhook-timestamp must be whole Unix seconds, not "${timestamp.trim()}".` });
    } else {
      skew = now - Number(timestamp.trim());
      if (Math.abs(skew) > TOLERANCE_SECONDS) {
        const when = skew > 0 ? `${formatDuration(skew)} old` : `${formatDuration(-skew)} in the future`;
        problems.push({
          kind: 'timestamp',
          text: `Timestamp outside the ±5 min tolerance: the message is ${when} (skew ${skew > 0 ? '+' : ''}${skew} s). A replayed or delayed message, or a wrong clock.`,
        });
      }
    }
  }

  const candidates = [];
  if (signature.trim()) {
    const entries = signature.trim().split(/\s+/);
    const other = [];
    entries.forEach((entry) => {
      const comma = entry.indexOf(',');
      const version = comma < 0 ? entry : entry.slice(0, comma);
      if (version !== 'v1') {
        other.push(version);
        return;
      }
      const bytes = decodeBase64(entry.slice(comma + 1));
      if (!bytes) notes.push(`Signature "${entry.slice(0, 24)}…" is not valid base64.`);
      else candidates.push(bytes);
    });
    if (!candidates.length) {
      problems.push({
        kind: 'no-v1',
        text: other.length
          ? `No v1 signature: webhook-signature only has ${other.map((version) => `"${version}"`).join(', ')} entries (expected "v1,<base64>").`
          : 'No v1 signature: webhook-signature has no "v1,<base64>" entry.',
      });
    } else if (candidates.length > 1) {
      notes.push(`${candidates.length} v1 signatures (a secret rotation is in progress): any one that verifies is enough.`);
    }
  }

  let matched = null;
  if (keyBytes && candidates.length && id.trim() && timestamp.trim()) {
    const expected = await hmacSha256(keyBytes, `${id.trim()}.${timestamp.trim()}.${body}`);
    matched = candidates.findIndex((candidate) => sameBytes(candidate, expected));
    if (matched < 0) {
      const hint = await mismatchHint(keyBytes, id.trim(), timestamp.trim(), body, candidates);
      problems.push({
        kind: 'mismatch',
        text: `Signature mismatch: no v1 signature matches HMAC-SHA256 of "${id.trim()}.${timestamp.trim()}.<body>". ${hint}`,
      });
      notes.push(`The signature computed here is v1,${encodeBase64(expected)}`);
    }
  }
  const timestampOnly = problems.length > 0 && problems.every((problem) => problem.kind === 'timestamp') && matched !== null && matched >= 0;
  if (timestampOnly) notes.push('The signature itself matches: only the timestamp is refused.');
  return { ok: problems.length === 0, problems, notes, skew, matched };
}

/** Why a signature may not match: the usual ways a body gets changed on its way. */
async function mismatchHint(keyBytes, id, timestamp, body, candidates) {
  const variants = [];
  if (body !== body.trim()) variants.push([body.trim(), 'leading or trailing whitespace was added to the body']);
  try {
    const compact = JSON.stringify(JSON.parse(body));
    if (compact !== body) variants.push([compact, 'the body was parsed and re-serialized (spacing or key order changed)']);
  } catch {
    // Not JSON: no variant to try.
  }
  if (body.includes('\n')) variants.push([body.replace(/\n/g, '\r\n'), 'line endings were changed (\\r\\n to \\n)']);
  for (const [variant, reason] of variants) {
    const signature = await hmacSha256(keyBytes, `${id}.${timestamp}.${variant}`);
    if (candidates.some((candidate) => sameBytes(candidate, signature))) {
      return `It would match if ${reason.replace(/ was| were/, ' had not been')}: verify the raw body bytes exactly as received.`;
    }
  }
  return 'The body (or webhook-id, or webhook-timestamp) was altered after signing, or the secret is not this endpoint\'s (e.g. it was rotated).';
}

function renderVerify(page) {
  const secret = h('input', { id: 'verify-secret', type: 'password', autocomplete: 'off', spellcheck: 'false', placeholder: 'whsec_…' });
  const showSecret = h('input', { type: 'checkbox', id: 'verify-show-secret' });
  showSecret.addEventListener('change', () => { secret.type = showSecret.checked ? 'text' : 'password'; });
  const block = h('textarea', { id: 'verify-header-block', rows: '4', spellcheck: 'false', placeholder: 'webhook-id: …\nwebhook-timestamp: …\nwebhook-signature: v1,…' });
  const id = h('input', { id: 'verify-id', type: 'text', spellcheck: 'false', autocomplete: 'off' });
  const timestamp = h('input', { id: 'verify-timestamp', type: 'text', inputmode: 'numeric', spellcheck: 'false', autocomplete: 'off' });
  const signature = h('input', { id: 'verify-signature', type: 'text', spellcheck: 'false', autocomplete: 'off' });
  const body = h('textarea', { id: 'verify-body', rows: '8', spellcheck: 'false', placeholder: '{"type":"…","timestamp":"…","data":{…}}' });
  const result = h('div', { id: 'verify-result', class: 'verify-result', role: 'status', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit' }, 'Verify');

  block.addEventListener('input', () => {
    const headers = parseHeaderBlock(block.value);
    if (headers.has('webhook-id')) id.value = headers.get('webhook-id');
    if (headers.has('webhook-timestamp')) timestamp.value = headers.get('webhook-timestamp');
    if (headers.has('webhook-signature')) signature.value = headers.get('webhook-signature');
  });

  const form = h('form', { class: 'verify-form', novalidate: true },
    h('div', { class: 'verify-columns' },
      h('div', null,
        field('Signing secret', secret, 'The endpoint\'s whsec_… secret. It stays in this page: nothing is sent anywhere.'),
        h('div', { class: 'field field-check' }, showSecret, h('label', { for: 'verify-show-secret', text: 'Show the secret' })),
        field('Raw header block (optional)', block, 'Paste the request\'s headers to fill the three fields below.'),
        field('webhook-id', id),
        field('webhook-timestamp', timestamp, 'Unix seconds; accepted within ±5 minutes of this computer\'s clock.'),
        field('webhook-signature', signature, 'Space-separated "v1,<base64>" entries.')),
      h('div', null,
        field('Body (exactly as received)', body),
        h('p', null, submit),
        result)));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!(window.crypto && crypto.subtle)) {
      clear(result).appendChild(alertBox('This browser offers no WebCrypto here (it needs a secure context: https or localhost).'));
      return;
    }
    submit.disabled = true;
    try {
      const now = Math.floor(Date.now() / 1000);
      const outcome = await verifySignature({ secret: secret.value, id: id.value, timestamp: timestamp.value, signature: signature.value, body: body.value }, now);
      if (!page.alive()) return;
      const notes = outcome.notes.length ? h('ul', { class: 'notes' }, outcome.notes.map((note) => h('li', { class: 'small', text: note }))) : null;
      if (outcome.ok) {
        put(clear(result), alertBox(h('span', null, h('strong', { text: 'Verified. ' }),
          `v1 signature ${outcome.matched + 1} matches, and the timestamp is ${formatDuration(outcome.skew)} ${outcome.skew >= 0 ? 'old' : 'ahead'} (within ±5 min).`), 'success'), notes);
        result.dataset.verdict = 'verified';
      } else {
        put(clear(result), alertBox(h('div', null, h('strong', { text: 'Does not verify.' }),
          h('ul', null, outcome.problems.map((problem) => h('li', { dataset: { problem: problem.kind }, text: problem.text })))), 'error'), notes);
        result.dataset.verdict = 'failed';
      }
    } catch (error) {
      clear(result).appendChild(alertBox(`Could not verify: ${error.message}`));
    } finally {
      submit.disabled = false;
    }
  });

  put(main, pageHeader('Verify a webhook signature'),
    h('p', { class: 'muted' }, 'Checks a delivery the way a receiver should, per ',
      h('a', { href: 'https://www.standardwebhooks.com/', rel: 'noopener noreferrer', target: '_blank', text: 'Standard Webhooks' }),
      ': HMAC-SHA256 of "webhook-id.webhook-timestamp.body" with the secret, computed in this browser.'),
    auth.session ? null : h('p', null, h('a', { href: '#/overview', text: 'Back to sign-in' })),
    h('section', { class: 'card' }, form));
  if (!auth.session) {
    // The sign-in link above leads back to the login screen.
    main.querySelector('a[href="#/overview"]').addEventListener('click', (event) => {
      event.preventDefault();
      history.replaceState(null, '', '#/overview');
      showLogin();
    });
  }
}

start();
