// hlpt's dashboard: one page, plain JavaScript, no build step. Every call it makes is an ordinary
// call of the REST API in docs/rest.md (the page has no private endpoints); with API keys on, the
// key is asked for once and kept in sessionStorage. Views are chosen by the URL's hash:
//   #/jobs            the job table            #/jobs/<id>   one job: live loss chart, events, controls
//   #/new             upload, validate, start  #/adapters    list, import, export, delete
//   #/playground      chat or complete, streamed, one model or side by side
// The loss chart follows the job's event stream (server-sent events read through fetch, which can
// carry the Authorization header where EventSource cannot); nothing on the job page polls.
'use strict';

// ---- small helpers ------------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);

// h('div', {class: 'x', onclick: f}, child, 'text', [more]) builds an element.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'html') el.innerHTML = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const fmt = (v, digits = 4) => (isNum(v) ? v.toFixed(digits) : '—');
const fmtInt = (v) => (isNum(v) ? Math.round(v).toLocaleString('en-US') : '—');
const fmtLr = (v) => (isNum(v) ? (v === 0 ? '0' : v.toExponential(2)) : '—');

function fmtDuration(s) {
  if (!isNum(s)) return '—';
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function fmtTime(unix) {
  if (!isNum(unix)) return '—';
  const d = new Date(unix * 1000);
  return d.toLocaleString('en-GB', { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function fmtBytes(n) {
  if (!isNum(n)) return '—';
  const u = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) n /= 1024, i++;
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function toast(text, bad = false) {
  const t = h('div', { class: bad ? 'toast bad' : 'toast' }, text);
  $('#toasts').append(t);
  setTimeout(() => t.remove(), bad ? 7000 : 3500);
}

const isAbort = (e) => e && (e.name === 'AbortError' || e.name === 'ViewGone');

// ---- the REST client ----------------------------------------------------------------------------

const KEY_STORE = 'hlpt.apiKey';
let keyPrompt = null;

function authHeaders() {
  const k = sessionStorage.getItem(KEY_STORE);
  return k ? { Authorization: `Bearer ${k}` } : {};
}

class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    super(e && e.message ? e.message : `HTTP ${status}`);
    this.status = status;
    this.param = e ? e.param : null;
    this.code = e ? e.code : null;
  }
}

// Shows the key dialog (once, however many calls are waiting) and resolves when a key was given.
function askKey(refused) {
  if (keyPrompt) return keyPrompt;
  const dlg = $('#key-dialog');
  $('#key-error').hidden = !refused;
  $('#key-error').textContent = 'The daemon refused that key; try another.';
  keyPrompt = new Promise((resolve) => {
    $('#key-form').onsubmit = (e) => {
      e.preventDefault();
      const v = $('#key-input').value.trim();
      if (!v) return;
      sessionStorage.setItem(KEY_STORE, v);
      $('#key-input').value = '';
      dlg.close();
      keyPrompt = null;
      $('#key-button').hidden = false;
      resolve();
    };
  });
  dlg.oncancel = (e) => e.preventDefault(); // the page cannot work without a key
  dlg.showModal();
  setTimeout(() => $('#key-input').focus(), 0);
  return keyPrompt;
}

// One API call. json: a body to send as JSON; form: a FormData; raw: return the Response (for
// streams). A 401 asks for a key and tries again.
async function request(method, path, { json, form, signal, raw } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = authHeaders();
    let body;
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    } else if (form) {
      body = form;
    }
    const res = await fetch(path, { method, headers, body, signal });
    if (res.status === 401 && attempt < 20) {
      await askKey(attempt > 0 || !!headers.Authorization);
      continue;
    }
    if (raw && res.ok) return res;
    const text = await res.text();
    let data = text;
    try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }
}

const api = {
  get: (path, opts) => request('GET', path, opts),
  post: (path, json, opts) => request('POST', path, { ...opts, json }),
  del: (path, opts) => request('DELETE', path, opts),
};

// Server-sent events from a GET or POST: yields {event, data} until the stream ends.
async function* sse(method, path, json, signal) {
  const res = await request(method, path, { json, signal, raw: true });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = null;
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5));
          else if (line.startsWith('event:')) event = line.slice(6).trim();
        }
        if (data.length) yield { event, data: data.join('\n') };
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// Downloads an API resource as a file (a plain link could not carry the key).
async function download(path, filename) {
  const res = await request('GET', path, { raw: true });
  const url = URL.createObjectURL(await res.blob());
  const a = h('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- views and routing --------------------------------------------------------------------------

// What a view owns: an AbortSignal for its requests and streams, and its timers; all end when the
// page moves to another view.
class View {
  constructor() {
    this.ctl = new AbortController();
    this.signal = this.ctl.signal;
    this.timers = [];
  }
  get alive() { return !this.signal.aborted; }
  every(ms, fn) { this.timers.push(setInterval(() => this.alive && fn().catch(report), ms)); }
  later(ms, fn) { this.timers.push(setTimeout(() => this.alive && fn(), ms)); }
  dispose() {
    const e = new Error('view left');
    e.name = 'ViewGone';
    this.ctl.abort(e);
    this.timers.forEach((t) => { clearInterval(t); clearTimeout(t); });
  }
}

function report(e) {
  if (isAbort(e)) return;
  console.warn(e);
  toast(e.message || String(e), true);
}

const routes = [
  [/^#\/jobs\/([^/?]+)$/, viewJob, 'jobs'],
  [/^#\/jobs$/, viewJobs, 'jobs'],
  [/^#\/new$/, viewNew, 'new'],
  [/^#\/adapters$/, viewAdapters, 'adapters'],
  [/^#\/playground(?:\?(.*))?$/, viewPlayground, 'playground'],
];
let current = null;

function route() {
  if (current) current.dispose();
  const hash = location.hash || '#/jobs';
  let match = null, fn = null, nav = null;
  for (const [re, f, n] of routes) {
    match = hash.match(re);
    if (match) { fn = f; nav = n; break; }
  }
  if (!fn) { location.hash = '#/jobs'; return; }
  document.querySelectorAll('[data-nav]').forEach((a) => a.classList.toggle('active', a.dataset.nav === nav));
  const v = new View();
  current = v;
  const root = $('#view');
  root.replaceChildren();
  fn(v, root, ...match.slice(1).map((x) => (x === undefined ? x : decodeURIComponent(x)))).catch(report);
}

// ---- the loss chart (SVG, drawn here; the daemon's loss.svg is the same plot, static) -----------

function niceStep(range, n) {
  const raw = range / n, mag = 10 ** Math.floor(Math.log10(raw)), f = raw / mag;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

function tickLabel(v, step) {
  if (Math.abs(step) < 1e-3 && v !== 0) return v.toExponential(1);
  const d = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return v.toFixed(Math.min(d, 6));
}

// series: [{name, color, points: [[x, y]...], dots}]. Returns an SVG element.
function lineChart(series, { height = 280, ylabel = '', empty = 'no steps yet' } = {}) {
  const W = 720, H = height, L = 62, R = 14, T = 12, B = 38;
  const all = series.flatMap((s) => s.points.filter((p) => isNum(p[1])));
  let xmin = Math.min(...all.map((p) => p[0])), xmax = Math.max(...all.map((p) => p[0]));
  let ymin = Math.min(...all.map((p) => p[1])), ymax = Math.max(...all.map((p) => p[1]));
  if (!all.length) { xmin = 0; xmax = 10; ymin = 0; ymax = 1; }
  if (xmax <= xmin) xmax = xmin + 1;
  if (ymax <= ymin) { ymax += Math.abs(ymax) * 0.05 || 0.5; ymin -= Math.abs(ymin) * 0.05 || 0.5; }
  // Steps are whole numbers: no tick between two of them.
  const ys = niceStep(ymax - ymin, 5), xs = Math.max(1, niceStep(xmax - xmin, 8));
  ymin = Math.floor(ymin / ys) * ys;
  ymax = Math.ceil(ymax / ys) * ys;
  xmin = Math.floor(xmin / xs) * xs;
  xmax = Math.ceil(xmax / xs) * xs;
  const px = (x) => L + ((x - xmin) / (xmax - xmin)) * (W - L - R);
  const py = (y) => H - B - ((y - ymin) / (ymax - ymin)) * (H - T - B);
  const out = [];
  for (let y = ymin; y <= ymax + ys / 2; y += ys) {
    out.push(`<line x1="${L}" y1="${py(y).toFixed(1)}" x2="${W - R}" y2="${py(y).toFixed(1)}" stroke="#eef0f3"/>`);
    out.push(`<text x="${L - 7}" y="${(py(y) + 4).toFixed(1)}" text-anchor="end" fill="#667085">${tickLabel(y, ys)}</text>`);
  }
  for (let x = xmin; x <= xmax + xs / 2; x += xs)
    out.push(`<text x="${px(x).toFixed(1)}" y="${H - B + 17}" text-anchor="middle" fill="#667085">${tickLabel(x, xs)}</text>`);
  out.push(`<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#98a2b3"/>`);
  out.push(`<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#98a2b3"/>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 4}" text-anchor="middle" fill="#667085">step</text>`);
  if (ylabel)
    out.push(`<text x="14" y="${(T + H - B) / 2}" text-anchor="middle" fill="#667085" transform="rotate(-90 14 ${(T + H - B) / 2})">${ylabel}</text>`);
  for (const s of series) {
    const pts = s.points.filter((p) => isNum(p[1]));
    if (pts.length > 1)
      out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.8" stroke-linejoin="round" points="${pts.map((p) => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(' ')}"/>`);
    if (s.dots || pts.length === 1)
      for (const p of pts)
        out.push(`<circle cx="${px(p[0]).toFixed(1)}" cy="${py(p[1]).toFixed(1)}" r="3.2" fill="${s.color}"><title>${s.name} at step ${p[0]}: ${p[1].toPrecision(5)}</title></circle>`);
  }
  if (!all.length) out.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#98a2b3">${empty}</text>`);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" font-size="11" font-family="sans-serif">${out.join('')}</svg>`;
  const wrap = h('div', { html: svg });
  return wrap.firstElementChild;
}

// ---- jobs ---------------------------------------------------------------------------------------

const TERMINAL = ['succeeded', 'failed', 'cancelled'];

function methodOf(job) {
  const m = job.method || {};
  if (m.hlpt_method && m.hlpt_method.type) return `${m.hlpt_method.type} (supervised)`;
  return m.type || '—';
}

const badge = (status) => h('span', { class: `badge ${status}`, 'data-status': status }, status);

function progressBar(p) {
  const frac = p && p.total_steps ? Math.min(1, p.step / p.total_steps) : 0;
  return h('span', {}, h('span', { class: 'progress' }, h('span', { style: `width:${(frac * 100).toFixed(1)}%` })),
    ' ', h('span', { class: 'small muted' }, p && p.total_steps ? `${p.step}/${p.total_steps}` : '—'));
}

async function viewJobs(v, root) {
  const tbody = h('tbody', {}, h('tr', {}, h('td', { colspan: 10, class: 'empty' }, 'Loading…')));
  root.append(
    h('div', { class: 'pagehead' }, h('div', {}, h('h1', {}, 'Fine-tuning jobs'),
      h('div', { class: 'muted' }, 'Newest first. Click a job for its live loss chart, events and checkpoints.')),
      h('span', { class: 'spacer' }), h('a', { class: 'button', href: '#/new' }, '+ New job')),
    h('div', { class: 'card' }, h('table', { id: 'jobs-table' },
      h('thead', {}, h('tr', {}, ['Job', 'Method', 'Status', 'Progress', 'Tokens/s', 'ETA', 'Train loss', 'Best valid loss', 'Created', 'Model']
        .map((t, i) => h('th', { class: i >= 4 && i <= 7 ? 'num' : null }, t)))),
      tbody)));
  async function refresh() {
    const list = await api.get('/v1/fine_tuning/jobs?limit=100', { signal: v.signal });
    const rows = list.data.map((j) => {
      const p = j.progress || {};
      return h('tr', { class: 'click', 'data-job': j.id, onclick: () => { location.hash = `#/jobs/${j.id}`; } },
        h('td', {}, h('a', { href: `#/jobs/${j.id}`, class: 'mono' }, j.id), j.suffix ? h('div', { class: 'small muted' }, j.suffix) : null),
        h('td', {}, methodOf(j)),
        h('td', {}, badge(j.status), j.queue_position ? h('span', { class: 'small muted' }, ` #${j.queue_position}`) : null),
        h('td', {}, progressBar(p)),
        h('td', { class: 'num' }, j.status === 'running' ? fmt(p.tokens_per_s, 0) : '—'),
        h('td', { class: 'num' }, j.status === 'running' ? fmtDuration(p.eta_s) : '—'),
        h('td', { class: 'num' }, fmt(p.train_loss)),
        h('td', { class: 'num' }, j.best ? `${fmt(j.best.valid_loss)} @${j.best.step}` : '—'),
        h('td', { class: 'small' }, fmtTime(j.created_at)),
        h('td', { class: 'mono small' }, j.fine_tuned_model || ''));
    });
    tbody.replaceChildren(...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 10, class: 'empty' },
      'No jobs yet. ', h('a', { href: '#/new' }, 'Start one.')))]));
  }
  await refresh();
  // The table has no event stream of its own; a light refresh keeps statuses current.
  v.every(3000, refresh);
}

async function viewJob(v, root, id) {
  const el = {
    title: h('h1', { class: 'mono' }, id),
    badge: h('span', {}),
    sub: h('div', { class: 'muted small' }),
    pause: h('button', { id: 'job-pause', onclick: () => act('pause') }, 'Pause'),
    resume: h('button', { id: 'job-resume', onclick: () => act('resume') }, 'Resume'),
    cancel: h('button', { id: 'job-cancel', class: 'danger', onclick: () => act('cancel') }, 'Cancel'),
    play: h('a', { class: 'button', id: 'job-play', hidden: true }, 'Open in playground'),
    stats: h('div', { class: 'stats', id: 'job-stats' }),
    chart: h('div', { class: 'chart', id: 'loss-chart' }),
    lrChart: h('div', { class: 'chart', id: 'lr-chart' }),
    events: h('div', { class: 'events', id: 'job-events' }),
    settings: h('div', {}),
    ckpts: h('div', {}, h('div', { class: 'muted' }, 'None yet.')),
    error: h('div', {}),
  };
  root.append(
    h('div', { class: 'pagehead' },
      h('div', {}, h('div', { class: 'row' }, el.title, el.badge), el.sub),
      h('span', { class: 'spacer' }), el.play, el.pause, el.resume, el.cancel),
    el.error,
    h('div', { class: 'card' }, el.stats),
    h('div', { class: 'grid-main' },
      h('div', {},
        h('div', { class: 'card' }, h('h2', {}, 'Loss'), el.chart,
          h('div', { class: 'chart' }, h('div', { class: 'legend' },
            h('span', {}, h('span', { class: 'swatch', style: 'background:var(--train)' }), 'train'),
            h('span', {}, h('span', { class: 'swatch', style: 'background:var(--valid)' }), 'validation')))),
        h('div', { class: 'card' }, h('h2', {}, 'Learning rate'), el.lrChart)),
      h('div', {}, h('div', { class: 'card' }, h('h2', {}, 'Events'), el.events))),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' }, h('h2', {}, 'Method and hyperparameters'), el.settings),
      h('div', { class: 'card' }, h('h2', {}, 'Checkpoints'), el.ckpts)));

  const points = new Map(); // step -> {train, valid, lr}
  const seen = new Set();
  let job = null, jobTimer = null;

  function drawCharts() {
    const steps = [...points.keys()].sort((a, b) => a - b);
    const train = steps.map((s) => [s, points.get(s).train]);
    const valid = steps.map((s) => [s, points.get(s).valid]).filter((p) => isNum(p[1]));
    const svg = lineChart([{ name: 'train', color: '#1f77b4', points: train },
      { name: 'validation', color: '#d62728', points: valid, dots: true }], { ylabel: 'cross-entropy loss' });
    svg.dataset.points = String(train.filter((p) => isNum(p[1])).length);
    svg.dataset.validPoints = String(valid.length);
    el.chart.replaceChildren(svg);
    el.lrChart.replaceChildren(lineChart([{ name: 'learning rate', color: '#7a5af8', points: steps.map((s) => [s, points.get(s).lr]) }],
      { height: 170, ylabel: 'lr' }));
  }

  function stat(k, val, id) { return h('div', { class: 'stat', id }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, val)); }

  function renderJob(j) {
    job = j;
    const p = j.progress || {};
    el.badge.replaceChildren(badge(j.status));
    el.sub.textContent = `${methodOf(j)} · created ${fmtTime(j.created_at)}` + (j.finished_at ? ` · finished ${fmtTime(j.finished_at)}` : '') +
      (j.queue_position ? ` · queue position ${j.queue_position}` : '');
    el.pause.disabled = !['queued', 'running'].includes(j.status);
    el.resume.disabled = j.status !== 'paused';
    el.cancel.disabled = TERMINAL.includes(j.status);
    el.play.hidden = !j.fine_tuned_model;
    if (j.fine_tuned_model) el.play.href = `#/playground?model=${encodeURIComponent(j.fine_tuned_model)}`;
    const running = j.status === 'running';
    el.stats.replaceChildren(
      stat('Step', p.total_steps ? `${p.step} / ${p.total_steps}` : `${p.step || 0}`, 'stat-step'),
      stat('Epoch', isNum(p.epoch) ? String(+p.epoch.toFixed(2)) : '—'),
      stat('Tokens/s', running ? fmt(p.tokens_per_s, 0) : '—'),
      stat('ETA', running ? fmtDuration(p.eta_s) : '—'),
      stat('Train loss', fmt(p.train_loss)),
      stat('Valid loss', fmt(p.valid_loss)),
      stat('Best valid', j.best ? `${fmt(j.best.valid_loss)} @${j.best.step}` : '—'),
      stat('Learning rate', fmtLr(p.learning_rate)),
      stat('Trained tokens', fmtInt(j.trained_tokens)));
    el.error.replaceChildren(j.error && j.error.message ? h('div', { class: 'notice bad' }, j.error.message) : '');
    const m = j.method || {};
    const type = (m.hlpt_method && m.hlpt_method.type) || m.type;
    const settings = (m.hlpt_method && m.hlpt_method[type]) || m[type] || {};
    const rows = [['training_file', j.training_file], ['validation_file', j.validation_file], ['seed', j.seed],
      ['suffix', j.suffix], ['fine_tuned_model', j.fine_tuned_model], ['method.type', m.type === type ? type : `${m.type} → ${type}`]];
    for (const [k, val] of Object.entries(settings)) if (k !== 'hyperparameters') rows.push([`method.${k}`, val]);
    for (const [k, val] of Object.entries(j.hyperparameters || {})) rows.push([`hyperparameters.${k}`, val]);
    el.settings.replaceChildren(h('dl', { class: 'kv' }, rows.filter((r) => r[1] !== null && r[1] !== undefined)
      .map(([k, val]) => [h('dt', {}, k), h('dd', {}, typeof val === 'object' ? JSON.stringify(val) : String(val))])));
  }

  async function loadJob() { renderJob(await api.get(`/v1/fine_tuning/jobs/${id}`, { signal: v.signal })); }

  // At most one job fetch every 1.5 s, however fast the events come.
  function jobSoon() {
    if (jobTimer) return;
    jobTimer = setTimeout(() => { jobTimer = null; if (v.alive) loadJob().catch(report); }, 1500);
    v.timers.push(jobTimer);
  }

  async function loadCheckpoints() {
    const list = await api.get(`/v1/fine_tuning/jobs/${id}/checkpoints?limit=100`, { signal: v.signal });
    if (!list.data.length) return;
    el.ckpts.replaceChildren(h('table', { id: 'ckpt-table' },
      h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Step'), h('th', { class: 'num' }, 'Train'), h('th', { class: 'num' }, 'Valid'), h('th', {}, 'Model id'), h('th', {}))),
      h('tbody', {}, list.data.map((c) => h('tr', {},
        h('td', { class: 'num' }, c.step_number),
        h('td', { class: 'num' }, fmt(c.metrics && c.metrics.train_loss)),
        h('td', { class: 'num' }, fmt(c.metrics && c.metrics.valid_loss)),
        h('td', { class: 'mono small' }, c.fine_tuned_model_checkpoint),
        h('td', {}, h('a', { class: 'button small', href: `#/playground?model=${encodeURIComponent(c.fine_tuned_model_checkpoint)}`,
          title: 'Serve this checkpoint in the playground' }, 'Try')))))));
  }

  function addEvent(e) {
    if (seen.has(e.id)) return;
    seen.add(e.id);
    const d = e.data;
    if (d && isNum(d.step) && 'learning_rate' in d) {
      points.set(d.step, { train: d.train_loss, valid: d.valid_loss, lr: d.learning_rate });
      // The figures the job object would give, as they arrive (the next job fetch adds ETA and best).
      if (job) {
        const p = job.progress || (job.progress = {});
        p.step = d.step;
        for (const k of ['total_steps', 'epoch', 'train_loss', 'valid_loss', 'learning_rate', 'tokens_per_s'])
          if (isNum(d[k])) p[k] = d[k];
      }
      return true;
    }
    el.events.prepend(h('div', {}, h('span', { class: 't' }, fmtTime(e.created_at)), h('span', { class: e.level }, e.message)));
    return false;
  }

  async function act(what) {
    try {
      renderJob(await api.post(`/v1/fine_tuning/jobs/${id}/${what}`, undefined, { signal: v.signal }));
      toast(`Job ${what === 'cancel' ? 'cancelled' : what === 'pause' ? 'pausing' : 'resumed'}`);
    } catch (e) { report(e); }
  }

  // Follows the event stream; it replays the job's events oldest first, then sends new ones as
  // they happen, and ends with [DONE] once the job has ended.
  async function follow() {
    while (v.alive) {
      try {
        let metrics = 0;
        for await (const m of sse('GET', `/v1/fine_tuning/jobs/${id}/events?stream=true`, undefined, v.signal)) {
          if (m.data === '[DONE]') break;
          const e = JSON.parse(m.data);
          if (addEvent(e)) metrics++;
          else if (/^Checkpoint /.test(e.message)) loadCheckpoints().catch(report);
          drawSoon();
          jobSoon();
        }
      } catch (e) {
        if (isAbort(e)) return;
        console.warn('event stream:', e.message);
      }
      if (!v.alive) return;
      await loadJob();
      await loadCheckpoints();
      drawCharts();
      if (TERMINAL.includes(job.status)) return;
      await new Promise((r) => v.later(1500, r));
    }
  }

  let drawPending = false;
  function drawSoon() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      if (!v.alive) return;
      drawCharts();
      if (job) renderJob(job);
    });
  }

  await loadJob();
  drawCharts();
  loadCheckpoints().catch(report);
  follow().catch(report);
}

// ---- new job ------------------------------------------------------------------------------------

// Every setting the form offers: its default (what the trainer uses when the field is left as it
// is), and what it does. Fields left at their default are not sent.
const METHOD_FIELDS = [
  { key: 'r', def: '8', type: 'int', tip: 'LoRA rank R: the width of the low-rank update B·A. Larger learns more, costs more.' },
  { key: 'lora_alpha', def: '16', type: 'float', tip: 'LoRA scale numerator: the update is multiplied by lora_alpha / r.' },
  { key: 'lora_dropout', def: '0.05', type: 'float', tip: 'Dropout on the LoRA input during training (0..1).' },
  { key: 'gate', def: 'causal', options: ['causal', 'sequence', 'none'], tip: 'How each adapted module is gated: causal (running mean of token scores; exact under the KV cache), sequence (mean over the whole sequence, as the paper\'s code), none.' },
  { key: 'num_virtual_tokens', def: '20', type: 'int', tip: 'P, the number of prefix slots on each prefix layer.' },
  { key: 'target_modules', def: '', placeholder: 'method default', type: 'list', tip: 'Comma-separated modules that get LoRA, e.g. down_proj or gate_proj,up_proj,down_proj. Empty: the method\'s default (down_proj; q_proj,v_proj for lora).' },
  { key: 'ratio', def: '', placeholder: 'method default', type: 'float', tip: 'Fraction of layers, from the bottom, that get LoRA; the rest get a prefix.' },
];
const HP_FIELDS = [
  { key: 'n_epochs', def: '3', type: 'int', tip: 'Passes over the training set.' },
  { key: 'max_steps', def: '0', type: 'int', tip: 'Stop after this many optimizer steps; 0 runs every epoch.' },
  { key: 'batch_size', def: '16', type: 'int', tip: 'Examples per optimizer step.' },
  { key: 'micro_batch_size', def: '4', type: 'int', tip: 'Examples per forward/backward pass; gradients of batch_size / micro_batch_size passes are accumulated.' },
  { key: 'learning_rate', def: '0.003', type: 'float', tip: 'Peak learning rate of AdamW.' },
  { key: 'warmup_steps', def: '100', type: 'int', tip: 'Linear warm-up steps (capped at a tenth of the run).' },
  { key: 'lr_scheduler', def: 'linear', options: ['linear', 'cosine', 'constant'], tip: 'Decay after warm-up.' },
  { key: 'weight_decay', def: '0', type: 'float', tip: 'Decoupled weight decay of AdamW.' },
  { key: 'max_grad_norm', def: '1', type: 'float', tip: 'Global gradient-norm clipping; 0 turns it off.' },
  { key: 'max_length', def: '256', type: 'int', tip: 'Tokens per example; longer examples are truncated.' },
  { key: 'train_on_inputs', def: 'false', options: ['false', 'true'], type: 'bool', tip: 'Also learn the prompt tokens, not only the completion.' },
  { key: 'log_every', def: '1', type: 'int', tip: 'Steps between progress reports (points on the loss chart).' },
  { key: 'eval_every', def: '0', type: 'int', tip: 'Steps between validation passes; 0 evaluates at each epoch end.' },
  { key: 'save_every', def: '0', type: 'int', tip: 'Steps between checkpoints; 0 saves at each epoch end.' },
  { key: 'early_stopping_patience', def: '0', type: 'int', tip: 'Stop after this many evaluations without improvement; 0 turns it off.' },
  { key: 'validation_split', def: '', placeholder: 'none', type: 'float', tip: 'Fraction of the training file held out for validation when no validation file is given.' },
];
const JOB_FIELDS = [
  { key: 'suffix', def: '', placeholder: 'optional', type: 'text', tip: 'Part of the fine-tuned model\'s name: ft:<base>:<suffix>:<job>.' },
  { key: 'seed', def: '42', type: 'int', tip: 'Data order, dropout and initialisation: the same seed gives the same loss curve.' },
];
const METHODS = {
  hlpt: 'Gated LoRA on the bottom three quarters, gated prefixes on the top quarter.',
  h2lpt: 'Gated LoRA on the bottom quarter, gated prefixes on the top quarter, nothing in the middle.',
  lora: 'Baseline: LoRA on q_proj and v_proj of every layer, no gates.',
  prefix: 'Baseline: prefix tuning on every layer, no gates.',
};

function fieldInput(group, f) {
  const name = `${group}.${f.key}`;
  const input = f.options
    ? h('select', { name }, f.options.map((o) => h('option', { value: o, selected: o === f.def }, o)))
    : h('input', { name, value: f.def, placeholder: f.placeholder || '', inputmode: f.type === 'int' || f.type === 'float' ? 'decimal' : null });
  input.dataset.def = f.def;
  input.dataset.type = f.type || 'text';
  return h('label', { class: 'field', title: f.tip }, h('span', { class: 'name' }, f.key, h('span', { class: 'tip', title: f.tip }, '?')), input);
}

// The value of a field to send, or undefined when it is left at its default.
function fieldValue(input) {
  const raw = input.value.trim();
  if (raw === input.dataset.def) return undefined;
  if (raw === '') return undefined;
  switch (input.dataset.type) {
    case 'int': case 'float': return Number.isFinite(Number(raw)) ? Number(raw) : raw;
    case 'bool': return raw === 'true';
    case 'list': return raw.split(',').map((s) => s.trim()).filter(Boolean);
    default: return raw;
  }
}

async function viewNew(v, root) {
  const chosen = { train: null, valid: null };
  const fileSelects = {};

  function uploader(which, label, help) {
    const status = h('div', { id: `${which}-status` });
    const select = h('select', { id: `${which}-select`, onchange: () => { chosen[which] = select.value || null; status.replaceChildren(); } },
      h('option', { value: '' }, which === 'train' ? '— choose an uploaded file —' : '— none —'));
    fileSelects[which] = select;
    const input = h('input', { type: 'file', id: `${which}-file`, accept: '.jsonl,.json,application/jsonl' });
    input.addEventListener('change', async () => {
      const file = input.files[0];
      if (!file) return;
      status.replaceChildren(h('div', { class: 'notice' }, `Uploading and validating ${file.name}…`));
      const form = new FormData();
      form.append('purpose', 'fine-tune');
      form.append('file', file, file.name);
      try {
        const f = await request('POST', '/v1/files', { form, signal: v.signal });
        chosen[which] = f.id;
        select.append(h('option', { value: f.id }, `${f.filename} (${f.id})`));
        select.value = f.id;
        status.replaceChildren(fileReport(f));
      } catch (e) {
        if (isAbort(e)) return;
        chosen[which] = null;
        select.value = '';
        status.replaceChildren(h('div', { class: 'notice bad', 'data-valid': 'false' },
          h('strong', {}, `${file.name} was refused: `), e.message, e.param ? h('div', { class: 'small' }, `field: ${e.param}`) : null));
      }
    });
    return h('div', { class: 'card' }, h('h2', {}, label), h('p', { class: 'muted small' }, help), input,
      h('div', { class: 'row', style: 'margin-top:8px' }, h('span', { class: 'muted small' }, 'or'), select), status);
  }

  function fileReport(f) {
    const s = f.stats || {};
    const items = [['format', s.format], ['examples', fmtInt(s.examples)], ['lines', fmtInt(s.lines)], ['tokens', fmtInt(s.tokens)],
      ['max tokens / example', fmtInt(s.max_example_tokens)], ['prompt chars', fmtInt(s.prompt_chars)],
      ['completion chars', fmtInt(s.completion_chars)], ['bytes', fmtBytes(f.bytes)]].filter((x) => x[1] !== undefined && x[1] !== '—');
    return h('div', { class: 'notice good', 'data-valid': 'true' }, h('strong', {}, `${f.filename} is valid`), ` — stored as ${f.id}`,
      h('div', { class: 'stats' }, items.map(([k, val]) => h('div', { class: 'stat' }, h('div', { class: 'k' }, k), h('div', { class: 'v' }, val)))));
  }

  const methodSel = h('select', { name: 'method.type', id: 'method-type' }, Object.keys(METHODS).map((m) => h('option', { value: m, selected: m === 'hlpt' }, m)));
  const methodHelp = h('p', { class: 'muted small' }, METHODS.hlpt);
  methodSel.addEventListener('change', () => { methodHelp.textContent = METHODS[methodSel.value]; });
  const form = h('form', { id: 'job-form', onsubmit: (e) => { e.preventDefault(); start(); } });
  const result = h('div', { id: 'job-result' });
  const startBtn = h('button', { class: 'primary', id: 'start-job', type: 'submit' }, 'Start fine-tuning');

  form.append(
    h('div', { class: 'card' }, h('h2', {}, 'Method'), h('div', { class: 'row' }, methodSel), methodHelp,
      h('div', { class: 'form-grid' }, METHOD_FIELDS.map((f) => fieldInput('method', f)))),
    h('div', { class: 'card' }, h('h2', {}, 'Hyperparameters'),
      h('p', { class: 'muted small' }, 'Defaults are filled in; hover a name for what it does. Only changed values are sent.'),
      h('div', { class: 'form-grid' }, HP_FIELDS.map((f) => fieldInput('hp', f))),
      h('h3', {}, 'Job'), h('div', { class: 'form-grid' }, JOB_FIELDS.map((f) => fieldInput('job', f))),
      h('div', { class: 'row end', style: 'margin-top:14px' }, startBtn), result));

  root.append(
    h('div', { class: 'pagehead' }, h('div', {}, h('h1', {}, 'New fine-tuning job'),
      h('div', { class: 'muted' }, 'Upload a JSONL file: the daemon validates it before storing it.'))),
    h('div', { class: 'grid2' },
      uploader('train', 'Training file', 'One example a line: {"prompt","completion"}, Alpaca {"instruction","input","output"}, {"messages":[…]} or {"text"}.'),
      uploader('valid', 'Validation file (optional)', 'Same format; measured every eval_every steps. Without it, validation_split can hold out part of the training file.')),
    form);

  async function start() {
    result.replaceChildren();
    form.querySelectorAll('.invalid').forEach((x) => x.classList.remove('invalid'));
    if (!chosen.train) {
      result.replaceChildren(h('div', { class: 'notice bad' }, 'Choose or upload a training file first.'));
      return;
    }
    const type = methodSel.value;
    const settings = {}, hp = {}, body = { training_file: chosen.train };
    if (chosen.valid) body.validation_file = chosen.valid;
    form.querySelectorAll('[name^="method."]:not(#method-type)').forEach((i) => { const x = fieldValue(i); if (x !== undefined) settings[i.name.slice(7)] = x; });
    form.querySelectorAll('[name^="hp."]').forEach((i) => { const x = fieldValue(i); if (x !== undefined) hp[i.name.slice(3)] = x; });
    form.querySelectorAll('[name^="job."]').forEach((i) => { const x = fieldValue(i); if (x !== undefined) body[i.name.slice(4)] = x; });
    body.method = { type };
    if (Object.keys(settings).length) body.method[type] = settings;
    if (Object.keys(hp).length) body.hyperparameters = hp;
    startBtn.disabled = true;
    try {
      const job = await api.post('/v1/fine_tuning/jobs', body, { signal: v.signal });
      toast(`Job ${job.id} created`);
      location.hash = `#/jobs/${job.id}`;
    } catch (e) {
      if (isAbort(e)) return;
      result.replaceChildren(h('div', { class: 'notice bad' }, e.message, e.param ? h('div', { class: 'small' }, `field: ${e.param}`) : null));
      const key = e.param && e.param.split('.').pop();
      const bad = key && form.querySelector(`[name="hp.${key}"], [name="method.${key}"], [name="job.${key}"]`);
      if (bad) bad.classList.add('invalid');
    } finally {
      startBtn.disabled = false;
    }
  }

  const files = await api.get('/v1/files?limit=100', { signal: v.signal });
  for (const f of files.data.filter((x) => x.purpose === 'fine-tune' && x.status !== 'deleted'))
    for (const s of Object.values(fileSelects)) s.append(h('option', { value: f.id }, `${f.filename} (${f.id})`));
}

// ---- adapters -----------------------------------------------------------------------------------

async function viewAdapters(v, root) {
  const tbody = h('tbody', {});
  const nameIn = h('input', { id: 'import-name', placeholder: 'name (optional)' });
  const cfgIn = h('input', { type: 'file', id: 'import-config', accept: '.json' });
  const wIn = h('input', { type: 'file', id: 'import-weights', accept: '.safetensors' });
  const status = h('div', { id: 'import-status' });
  root.append(
    h('div', { class: 'pagehead' }, h('div', {}, h('h1', {}, 'Adapters'),
      h('div', { class: 'muted' }, 'Every adapter the daemon serves: made by jobs or imported (hlpt or HF PEFT LoRA / prefix tuning files).'))),
    h('div', { class: 'card' }, h('table', { id: 'adapters-table' },
      h('thead', {}, h('tr', {}, ['Name', 'Method', 'Size', 'Base hash', 'Source job', 'Created', ''].map((t, i) => h('th', { class: i === 2 ? 'num' : null }, t)))),
      tbody)),
    h('div', { class: 'card' }, h('h2', {}, 'Import an adapter'),
      h('p', { class: 'muted small' }, 'adapter_config.json and adapter_model.safetensors, as hlpt exports them or HF PEFT saves them. The adapter is loaded against the base before it is stored.'),
      h('div', { class: 'grid2' }, h('label', {}, h('span', { class: 'muted small' }, 'adapter_config.json'), cfgIn),
        h('label', {}, h('span', { class: 'muted small' }, 'adapter_model.safetensors'), wIn)),
      h('div', { class: 'row', style: 'margin-top:10px' }, nameIn, h('button', { class: 'primary', id: 'import-button', onclick: doImport }, 'Import')),
      status));

  async function doImport() {
    if (!cfgIn.files[0] || !wIn.files[0]) {
      status.replaceChildren(h('div', { class: 'notice bad' }, 'Choose both files.'));
      return;
    }
    const form = new FormData();
    form.append('config', cfgIn.files[0], 'adapter_config.json');
    form.append('weights', wIn.files[0], 'adapter_model.safetensors');
    if (nameIn.value.trim()) form.append('name', nameIn.value.trim());
    try {
      const a = await request('POST', '/v1/adapters', { form, signal: v.signal });
      status.replaceChildren(h('div', { class: 'notice good' }, `Imported ${a.name} (${a.id}).`));
      await refresh();
    } catch (e) {
      if (!isAbort(e)) status.replaceChildren(h('div', { class: 'notice bad' }, e.message));
    }
  }

  async function remove(a) {
    if (!confirm(`Delete adapter ${a.name}?`)) return;
    try {
      await api.del(`/v1/adapters/${encodeURIComponent(a.id)}`, { signal: v.signal });
      toast(`Deleted ${a.name}`);
      await refresh();
    } catch (e) { report(e); }
  }

  async function refresh() {
    const all = [];
    let after = '';
    for (let i = 0; i < 50; i++) {
      const page = await api.get(`/v1/adapters?limit=100${after ? `&after=${encodeURIComponent(after)}` : ''}`, { signal: v.signal });
      all.push(...page.data);
      if (!page.has_more || !page.data.length) break;
      after = page.data[page.data.length - 1].id;
    }
    tbody.replaceChildren(...(all.length ? all.map((a) => {
      const c = a.config || {};
      const method = c.method || (c.peft_type ? c.peft_type.toLowerCase() : '—');
      return h('tr', { 'data-adapter': a.name },
        h('td', {}, h('div', { class: 'mono' }, a.name), h('div', { class: 'small muted mono' }, a.id)),
        h('td', {}, method, c.r ? h('span', { class: 'small muted' }, ` r=${c.r}`) : null),
        h('td', { class: 'num' }, fmtBytes(a.bytes)),
        h('td', { class: 'mono small', title: a.base_hash || '' }, a.base_hash ? `${a.base_hash.slice(0, 12)}…` : '—'),
        h('td', {}, a.job_id ? h('a', { class: 'mono small', href: `#/jobs/${a.job_id}` }, a.job_id) : h('span', { class: 'muted' }, 'imported')),
        h('td', { class: 'small' }, fmtTime(a.created_at)),
        h('td', {}, h('div', { class: 'row' },
          h('a', { class: 'button small', href: `#/playground?model=${encodeURIComponent(a.name)}` }, 'Try'),
          h('button', { class: 'small', 'data-act': 'export', title: 'Download adapter_config.json and adapter_model.safetensors',
            onclick: () => exportAdapter(a).catch(report) }, 'Export'),
          h('button', { class: 'small danger', 'data-act': 'delete', onclick: () => remove(a) }, 'Delete'))));
    }) : [h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No adapters yet: a succeeded job registers one, or import one below.'))]));
  }

  async function exportAdapter(a) {
    const base = `/v1/adapters/${encodeURIComponent(a.id)}/files`;
    await download(`${base}/adapter_config.json`, 'adapter_config.json');
    await download(`${base}/adapter_model.safetensors`, 'adapter_model.safetensors');
  }

  await refresh();
}

// ---- playground ---------------------------------------------------------------------------------

async function viewPlayground(v, root, query) {
  const params = new URLSearchParams(query || '');
  const models = await api.get('/v1/models', { signal: v.signal });
  const base = models.data.find((m) => !m.parent) || { id: 'base' };
  const adapters = models.data.filter((m) => m.parent).map((m) => m.id);
  const wanted = params.get('model');
  if (wanted && wanted !== base.id && !adapters.includes(wanted)) adapters.unshift(wanted); // e.g. a checkpoint
  const state = { mode: 'chat', compare: false, busy: null };

  const modeSel = h('select', { id: 'play-mode' }, h('option', { value: 'chat' }, 'Chat'), h('option', { value: 'complete' }, 'Complete'));
  const compareBox = h('input', { type: 'checkbox', id: 'play-compare' });
  const maxTok = h('input', { id: 'play-max-tokens', value: '64', size: 5 });
  const temp = h('input', { id: 'play-temperature', value: '0', size: 4 });
  const system = h('input', { id: 'play-system', placeholder: 'system message (optional)', style: 'flex:1;min-width:220px' });
  const prompt = h('textarea', { id: 'play-prompt', placeholder: 'Type a message… (Ctrl+Enter sends)' });
  const send = h('button', { class: 'primary', id: 'play-send' }, 'Send');
  const stop = h('button', { id: 'play-stop', disabled: true }, 'Stop');
  const clear = h('button', { id: 'play-clear' }, 'Clear');
  const colsEl = h('div', { class: 'play-cols', id: 'play-cols' });
  let cols = [];

  function modelSelect(options, selected, extra) {
    return h('select', { class: 'play-model' }, extra ? h('option', { value: '' }, extra) : null,
      options.map((m) => h('option', { value: m, selected: m === selected }, m === base.id ? `${m} (base)` : m)));
  }

  function layout() {
    const keep = cols.map((c) => c.select.value);
    if (!state.compare) {
      const sel = modelSelect([base.id, ...adapters], keep[0] || wanted || base.id);
      cols = [{ select: sel }];
    } else {
      const a1 = keep[1] || (wanted && wanted !== base.id ? wanted : adapters[0]);
      cols = [{ select: modelSelect([base.id], base.id) },
        { select: modelSelect(adapters, a1, adapters.length ? null : '(no adapters)') },
        { select: modelSelect(adapters, keep[2] || '', '(none)') }];
      cols[0].select.disabled = true;
    }
    for (const c of cols) {
      c.log = h('div', { class: 'log' });
      c.history = [];
      c.el = h('div', { class: 'play-col' }, h('div', { class: 'head' }, c.select), c.log);
      c.select.addEventListener('change', () => { c.history = []; c.log.replaceChildren(); });
    }
    colsEl.style.gridTemplateColumns = `repeat(${cols.length}, minmax(0, 1fr))`;
    colsEl.replaceChildren(...cols.map((c) => c.el));
  }

  root.append(
    h('div', { class: 'pagehead' }, h('div', {}, h('h1', {}, 'Playground'),
      h('div', { class: 'muted' }, 'Chat or complete with the base model, an adapter or a checkpoint, streamed. Compare sends the same prompt to the base and to one or two adapters.'))),
    h('div', { class: 'card row' },
      h('label', { class: 'row' }, 'Mode', modeSel),
      h('label', { class: 'row', title: 'The same prompt to the base and to one or two adapters, side by side' }, compareBox, 'Side by side'),
      h('label', { class: 'row', title: 'max_tokens: the most tokens each answer may have' }, 'Max tokens', maxTok),
      h('label', { class: 'row', title: 'temperature: 0 is greedy (deterministic); higher samples more freely (up to 2)' }, 'Temperature', temp),
      system),
    colsEl,
    h('div', { class: 'composer' }, prompt, h('div', { class: 'row' }, clear, stop, send)));

  modeSel.addEventListener('change', () => { state.mode = modeSel.value; system.hidden = state.mode !== 'chat'; clearAll(); });
  compareBox.addEventListener('change', () => { state.compare = compareBox.checked; layout(); });
  clear.addEventListener('click', clearAll);
  stop.addEventListener('click', () => state.busy && state.busy.abort());
  send.addEventListener('click', () => run().catch(report));
  prompt.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) send.click(); });
  function clearAll() { for (const c of cols) { c.history = []; c.log.replaceChildren(); } }

  async function run() {
    const text = prompt.value;
    if (!text.trim() || state.busy) return;
    const active = cols.filter((c) => c.select.value);
    if (!active.length) return;
    const ctl = new AbortController();
    v.signal.addEventListener('abort', () => ctl.abort());
    state.busy = ctl;
    send.disabled = true;
    stop.disabled = false;
    prompt.value = '';
    try {
      await Promise.all(active.map((c) => runOne(c, text, ctl.signal)));
    } finally {
      state.busy = null;
      send.disabled = false;
      stop.disabled = true;
    }
  }

  async function runOne(c, text, signal) {
    const model = c.select.value;
    const max_tokens = parseInt(maxTok.value, 10) || 64;
    const temperature = Number(temp.value) || 0;
    c.log.append(h('div', { class: 'msg user' }, h('span', { class: 'who' }, state.mode === 'chat' ? 'user' : 'prompt'), text));
    const out = h('span', { class: 'text' });
    const meta = h('div', { class: 'meta' });
    const bubble = h('div', { class: 'msg assistant streaming', 'data-model': model }, h('span', { class: 'who' }, model), out, meta);
    c.log.append(bubble);
    let path, body;
    if (state.mode === 'chat') {
      c.history.push({ role: 'user', content: text });
      const messages = system.value.trim() ? [{ role: 'system', content: system.value.trim() }, ...c.history] : [...c.history];
      path = '/v1/chat/completions';
      body = { model, messages, max_tokens, temperature, stream: true, stream_options: { include_usage: true } };
    } else {
      path = '/v1/completions';
      body = { model, prompt: text, max_tokens, temperature, stream: true, stream_options: { include_usage: true } };
    }
    const t0 = performance.now();
    let answer = '', finish = null, usage = null;
    try {
      for await (const m of sse('POST', path, body, signal)) {
        if (m.data === '[DONE]') break;
        const chunk = JSON.parse(m.data);
        if (chunk.usage) usage = chunk.usage;
        const ch = chunk.choices && chunk.choices[0];
        if (!ch) continue;
        const delta = state.mode === 'chat' ? (ch.delta && ch.delta.content) || '' : ch.text || '';
        answer += delta;
        out.textContent = answer;
        if (ch.finish_reason) finish = ch.finish_reason;
        c.log.scrollTop = c.log.scrollHeight;
      }
      const secs = (performance.now() - t0) / 1000;
      meta.textContent = [usage ? `${usage.completion_tokens} tokens` : null, `${secs.toFixed(1)} s`, finish ? `finish: ${finish}` : null].filter(Boolean).join(' · ');
      if (state.mode === 'chat') c.history.push({ role: 'assistant', content: answer });
    } catch (e) {
      if (state.mode === 'chat') c.history.pop();
      meta.textContent = isAbort(e) ? 'stopped' : '';
      if (!isAbort(e)) out.append(h('div', { class: 'error' }, e.message));
    } finally {
      bubble.classList.remove('streaming');
      bubble.dataset.done = 'true';
    }
  }

  layout();
}

// ---- start-up -----------------------------------------------------------------------------------

async function health() {
  const el = $('#health');
  try {
    const res = await fetch('/health');
    const body = await res.json();
    el.textContent = body.status === 'ok' ? 'ready' : body.status;
    el.className = `health ${body.status === 'ok' ? 'ok' : 'bad'}`;
  } catch {
    el.textContent = 'unreachable';
    el.className = 'health bad';
  }
}

$('#key-button').hidden = !sessionStorage.getItem(KEY_STORE);
$('#key-button').addEventListener('click', () => {
  sessionStorage.removeItem(KEY_STORE);
  askKey(false).then(route);
});
window.addEventListener('hashchange', route);
health();
setInterval(health, 10000);
route();
