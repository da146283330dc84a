// The dashboard (GET /, web/*) in a real headless Chromium (Debian `chromium`, driven by npm
// `puppeteer-core`, installed by tests/run.sh into $HLPT_BUILD/node_modules) against a real hlptd on
// 127.0.0.1 serving the demo model with API keys on: the page asks for the key, a bad training file
// shows the server's validation error, a good one its statistics; a job starts, its chart gains
// points while it runs, it pauses and resumes; the playground chats with the adapter it made, alone
// and beside the base, and serves a checkpoint; another job is cancelled; the adapter is listed, exported, imported again and deleted; and the page logs
// no errors and talks to nothing but the daemon. Screenshots of each step go to $HLPT_BUILD/dashboard-screens/. The whole run is
// bounded (DEADLINE_MS); the last line is "node: N passed, N failed, N skipped" for the runner.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { BUILD, ROOT, sleep, startDaemon, stopDaemon } from './hlptd.mjs';
import assert from 'node:assert/strict';

const MODEL = path.join(ROOT, 'models', 'demo');
const SCREENS = path.join(BUILD, 'dashboard-screens');
const KEY = 'sk-dashboard-test';
const DEADLINE_MS = 180000;
// The job: short, a point on the chart every step, validation and a checkpoint every 10 steps.
const STEPS = 30;
const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));


// Without a browser the suite cannot run at all: say so as a skip, not a pass.
if (!CHROMIUM) {
  console.log('skipped dashboard: no chromium (tools/install-deps.sh installs it)');
  console.log('node: 0 passed, 0 failed, 1 skipped');
  process.exit(0);
}
const require = createRequire(path.join(BUILD, 'node_modules', 'noop.js'));
const puppeteer = require('puppeteer-core');

// ---- the daemon ---------------------------------------------------------------------------------

function startDashboardDaemon() {
  return startDaemon({
    model: MODEL, prefix: 'hlptd-dash-',
    args: (dir) => {
      writeFileSync(path.join(dir, 'keys'), `${KEY}\n`);
      return ['--workers', '1', '--api-key-file', path.join(dir, 'keys')];
    },
  });
}

// ---- helpers ------------------------------------------------------------------------------------

let d, browser, page, base, shot = 0;
const problems = []; // console errors, page errors, requests to anywhere but the daemon
const ctx = {};

async function screenshot(name, fullPage = true) {
  shot++;
  await page.screenshot({ path: path.join(SCREENS, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage });
}

// The number the chart says it draws (svg data-points), or -1.
const chartPoints = () => page.$eval('#loss-chart svg', (s) => Number(s.dataset.points)).catch(() => -1);
const status = () => page.$eval('#view .pagehead [data-status]', (b) => b.dataset.status).catch(() => null);

async function waitUntil(fn, what, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function setField(name, value) {
  await page.$eval(`[name="${name}"]`, (el, v) => { el.value = v; el.dispatchEvent(new Event('change')); }, String(value));
}

// ---- the tests ----------------------------------------------------------------------------------

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('static files: public, typed, cached by ETag, 404 under /ui/; data calls need the key', async () => {
  const index = await fetch(`${base}/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type'), /^text\/html/);
  assert.match(await index.text(), /<script src="\/ui\/app.js">/);
  const js = await fetch(`${base}/ui/app.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type'), /^text\/javascript/);
  const etag = js.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]+"$/);
  assert.equal(js.headers.get('cache-control'), 'no-cache');
  assert.equal((await fetch(`${base}/ui/app.js`, { headers: { 'If-None-Match': etag } })).status, 304);
  assert.match((await fetch(`${base}/ui/style.css`)).headers.get('content-type'), /^text\/css/);
  const missing = await fetch(`${base}/ui/nope.js`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, 'unknown_url');
  assert.equal((await fetch(`${base}/v1/files`)).status, 401);
  assert.equal((await fetch(`${base}/v1/files`, { headers: { Authorization: `Bearer ${KEY}` } })).status, 200);
  assert.equal((await fetch(`${base}/health`)).status, 200);
});

test('the page asks for the API key, again when it is refused, and keeps it in sessionStorage', async () => {
  await page.goto(`${base}/`, { waitUntil: 'load' });
  await page.waitForSelector('#key-dialog[open]', { timeout: 10000 });
  await screenshot('api-key');
  // A refused key brings the dialog back, saying so.
  await page.type('#key-input', 'sk-wrong');
  await page.click('#key-submit');
  await page.waitForSelector('#key-dialog[open] #key-error:not([hidden])', { timeout: 10000 });
  await page.type('#key-input', KEY);
  await page.click('#key-submit');
  await page.waitForSelector('#jobs-table tbody td', { timeout: 10000 });
  assert.equal(await page.evaluate(() => sessionStorage.getItem('hlpt.apiKey')), KEY);
  assert.equal(await page.$('#key-dialog[open]'), null);
  await screenshot('jobs-empty');
});

test('a bad training file shows the server\'s validation error: line and field', async () => {
  await page.goto(`${base}/#/new`);
  await page.waitForSelector('#train-file');
  const bad = path.join(d.dir, 'bad.jsonl');
  writeFileSync(bad, '{"prompt": "2+2=", "completion": "4"}\n{"prompt": "3+3="}\n');
  await (await page.$('#train-file')).uploadFile(bad);
  await page.waitForSelector('#train-status [data-valid="false"]', { timeout: 10000 });
  const text = await page.$eval('#train-status', (e) => e.textContent);
  assert.match(text, /line 2/);
  assert.match(text, /completion/);
  await screenshot('bad-file');
});

test('a good file shows its statistics, and a job starts from the form', async () => {
  await (await page.$('#train-file')).uploadFile(path.join(ROOT, 'data', 'math', 'train.jsonl'));
  await page.waitForSelector('#train-status [data-valid="true"]', { timeout: 20000 });
  const text = await page.$eval('#train-status', (e) => e.textContent);
  assert.match(text, /examples\s*2,000/);
  const valid = path.join(d.dir, 'valid.jsonl');
  writeFileSync(valid, readFileSync(path.join(ROOT, 'data', 'math', 'valid.jsonl'), 'utf8').split('\n').slice(0, 24).join('\n') + '\n');
  await (await page.$('#valid-file')).uploadFile(valid);
  await page.waitForSelector('#valid-status [data-valid="true"]', { timeout: 20000 });
  await page.select('#method-type', 'h2lpt');
  for (const [k, v] of Object.entries({ 'hp.max_steps': STEPS, 'hp.batch_size': 4, 'hp.log_every': 1, 'hp.eval_every': 10,
    'hp.save_every': 10, 'hp.warmup_steps': 5, 'hp.learning_rate': 0.01, 'hp.max_length': 128, 'job.suffix': 'dash' }))
    await setField(k, v);
  // A bad setting is the server's 400, shown beside the form and naming the field.
  await setField('hp.n_epochs', -1);
  await page.click('#start-job');
  await page.waitForSelector('#job-result .notice.bad', { timeout: 10000 });
  assert.match(await page.$eval('#job-result', (e) => e.textContent), /hyperparameters\.n_epochs/);
  assert.ok(await page.$('[name="hp.n_epochs"].invalid'));
  await setField('hp.n_epochs', 3);
  await screenshot('new-job');
  await page.click('#start-job');
  await page.waitForFunction(() => /^#\/jobs\/ftjob-/.test(location.hash), { timeout: 10000 });
  ctx.job = (await page.evaluate(() => location.hash)).slice('#/jobs/'.length);
  await page.waitForSelector('#loss-chart svg');
});

test('the loss chart gains points from the event stream while the job runs', async () => {
  const first = await waitUntil(async () => { const n = await chartPoints(); return n >= 2 ? n : 0; }, 'the first points', 60000);
  const later = await waitUntil(async () => { const n = await chartPoints(); return n > first ? n : 0; }, 'more points', 30000);
  assert.ok(later > first);
  assert.equal(await status(), 'running');
  await screenshot('job-running');
});

test('pause and resume from the job page', async () => {
  await page.click('#job-pause');
  await waitUntil(async () => (await status()) === 'paused', 'paused', 10000);
  assert.equal(await page.$eval('#job-resume', (b) => b.disabled), false);
  await sleep(1500);
  const atPause = await chartPoints();
  await screenshot('job-paused');
  await page.click('#job-resume');
  await waitUntil(async () => ['queued', 'running', 'succeeded'].includes(await status()), 'resumed', 20000);
  await waitUntil(async () => (await status()) === 'succeeded', 'the job to succeed', 120000);
  await waitUntil(async () => (await chartPoints()) >= STEPS, 'every step on the chart', 10000);
  assert.ok(atPause < STEPS, `paused at ${atPause} points`);
  const validPoints = await page.$eval('#loss-chart svg', (s) => Number(s.dataset.validPoints));
  assert.ok(validPoints >= 3, `${validPoints} validation points`);
  await page.waitForSelector('#ckpt-table tbody tr');
  ctx.model = await page.$eval('#job-play', (a) => decodeURIComponent(a.getAttribute('href').split('model=')[1]));
  assert.match(ctx.model, /^ft:/);
  await screenshot('job-succeeded');
  await screenshot('job-succeeded-top', false); // what docs/dashboard.png shows
});

test('the playground chats with the new adapter, streamed', async () => {
  await page.click('#job-play');
  await page.waitForSelector('#play-prompt');
  assert.equal(await page.$eval('#play-cols select', (s) => s.value), ctx.model);
  await page.type('#play-prompt', 'Tom has 3 apples and buys 4 more. How many apples does he have?');
  await page.click('#play-send');
  await page.waitForSelector('.msg.assistant[data-done="true"]', { timeout: 30000 });
  const answer = await page.$eval('.msg.assistant .text', (e) => e.textContent);
  assert.ok(answer.length > 0, 'an answer');
  await screenshot('playground-chat');
});

test('a checkpoint is served from its "Try" button', async () => {
  await page.goto(`${base}/#/jobs/${ctx.job}`);
  await page.waitForSelector('#ckpt-table tbody tr a');
  const ckpt = await page.$$eval('#ckpt-table tbody tr a', (as) => as.map((a) => decodeURIComponent(a.getAttribute('href').split('model=')[1])).pop());
  assert.match(ckpt, /:ckpt-step-\d+$/);
  await page.goto(`${base}/#/playground?model=${encodeURIComponent(ckpt)}`);
  await page.waitForSelector('#play-prompt');
  assert.equal(await page.$eval('#play-cols select', (s) => s.value), ckpt);
  await page.select('#play-mode', 'complete');
  await page.type('#play-prompt', 'A cat is');
  await page.click('#play-send');
  await page.waitForSelector('.msg.assistant[data-done="true"]', { timeout: 30000 });
  assert.equal(await page.$eval('.msg.assistant .error', () => true).catch(() => false), false);
  assert.match(await page.$eval('.msg.assistant .meta', (e) => e.textContent), /tokens/);
  await page.select('#play-mode', 'chat');
  await page.goto(`${base}/#/playground?model=${encodeURIComponent(ctx.model)}`);
  await page.waitForSelector('#play-prompt');
});

test('side by side: the same prompt to the base and the adapter', async () => {
  await page.click('#play-compare');
  const models = await page.$$eval('#play-cols select', (ss) => ss.map((s) => s.value));
  assert.equal(models.length, 3);
  assert.equal(models[1], ctx.model);
  await page.select('#play-mode', 'complete');
  await page.type('#play-prompt', 'A dog is');
  await page.click('#play-send');
  await waitUntil(async () => (await page.$$('.msg.assistant[data-done="true"]')).length === 2, 'two answers', 30000);
  const who = await page.$$eval('.msg.assistant', (m) => m.map((x) => x.dataset.model));
  assert.deepEqual(who.slice(1), [ctx.model]);
  await screenshot('playground-compare');
});

test('the adapters page lists the adapter with its source job', async () => {
  await page.goto(`${base}/#/adapters`);
  await page.waitForSelector(`tr[data-adapter="${ctx.model}"]`, { timeout: 10000 });
  const row = await page.$eval(`tr[data-adapter="${ctx.model}"]`, (r) => r.textContent);
  assert.match(row, /h2lpt/);
  assert.ok(row.includes(ctx.job));
  await screenshot('adapters');
  await page.goto(`${base}/#/jobs`);
  await page.waitForSelector(`tr[data-job="${ctx.job}"] [data-status="succeeded"]`, { timeout: 10000 });
  await screenshot('jobs');
});

test('an adapter exports, imports again under a new name, and is deleted', async () => {
  await page.goto(`${base}/#/adapters`);
  const dir = path.join(d.dir, 'downloads');
  mkdirSync(dir);
  const cdp = await page.createCDPSession();
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: dir });
  await page.waitForSelector(`tr[data-adapter="${ctx.model}"] button[data-act="export"]`, { timeout: 10000 });
  await page.click(`tr[data-adapter="${ctx.model}"] button[data-act="export"]`);
  const config = path.join(dir, 'adapter_config.json'), weights = path.join(dir, 'adapter_model.safetensors');
  await waitUntil(() => existsSync(config) && existsSync(weights), 'both files downloaded', 15000);
  assert.equal(JSON.parse(readFileSync(config, 'utf8')).method, 'h2lpt');
  await (await page.$('#import-config')).uploadFile(config);
  await (await page.$('#import-weights')).uploadFile(weights);
  await page.type('#import-name', 'dash-copy');
  await page.click('#import-button');
  await page.waitForSelector('#import-status .notice.good', { timeout: 10000 });
  await page.waitForSelector('tr[data-adapter="dash-copy"]', { timeout: 10000 });
  await screenshot('adapter-imported');
  page.once('dialog', (dialog) => dialog.accept());
  await page.click('tr[data-adapter="dash-copy"] button[data-act="delete"]');
  await waitUntil(async () => !(await page.$('tr[data-adapter="dash-copy"]')), 'the deleted row to go', 10000);
  assert.ok(await page.$(`tr[data-adapter="${ctx.model}"]`));
});

test('a queued job is cancelled from its page', async () => {
  const auth = { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' };
  const files = await (await fetch(`${base}/v1/files?limit=100`, { headers: auth })).json();
  const train = files.data.find((f) => f.filename === 'train.jsonl');
  const res = await fetch(`${base}/v1/fine_tuning/jobs`, { method: 'POST', headers: auth,
    body: JSON.stringify({ training_file: train.id, hyperparameters: { max_steps: 1000 } }) });
  const job = await res.json();
  assert.equal(res.status, 200, JSON.stringify(job));
  await page.goto(`${base}/#/jobs/${job.id}`);
  await page.waitForSelector('#job-cancel:not([disabled])');
  await page.click('#job-cancel');
  await waitUntil(async () => (await status()) === 'cancelled', 'cancelled', 10000);
  assert.equal(await page.$eval('#job-pause', (b) => b.disabled), true);
  await screenshot('job-cancelled');
});

test('no console errors, and no request to anywhere but the daemon', async () => {
  assert.deepEqual(problems, []);
});

// ---- the runner ---------------------------------------------------------------------------------

let passed = 0, failed = 0;
const deadline = setTimeout(() => {
  console.log(`FAIL the suite ran past ${DEADLINE_MS} ms`);
  console.log(`node: ${passed} passed, ${tests.length - passed} failed, 0 skipped`);
  if (d) d.proc.kill('SIGKILL');
  if (browser) browser.process()?.kill('SIGKILL');
  process.exit(1);
}, DEADLINE_MS);
try {
  rmSync(SCREENS, { recursive: true, force: true });
  mkdirSync(SCREENS, { recursive: true });
  d = await startDashboardDaemon();
  base = `http://127.0.0.1:${d.port}`;
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start. The rest keep the
    // browser from reaching any service of its own.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-default-apps', '--disable-extensions'],
    defaultViewport: { width: 1280, height: 860 },
  });
  page = await browser.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // The browser logs every 4xx reply as a failed resource. Three are the page working as meant:
    // the 401 that makes it ask for the key, and the 400s of the bad file and the bad setting the
    // tests give it.
    const url = m.location()?.url || '';
    if (/status of 401/.test(m.text()) && url.startsWith(base)) return;
    if (/status of 400/.test(m.text()) && [`${base}/v1/files`, `${base}/v1/fine_tuning/jobs`].includes(url)) return;
    problems.push(`console error: ${m.text()} (${url})`);
  });
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(`${base}/`) && !u.startsWith('data:') && !u.startsWith('blob:')) problems.push(`request to ${u}`);
  });
  for (const t of tests) {
    const started = Date.now();
    try {
      await t.fn();
      passed++;
      console.log(`ok   ${t.name} (${Date.now() - started} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${t.name}\n${e?.stack || e}`);
      if (page) await screenshot('failure').catch(() => {});
    }
  }
} catch (e) {
  failed = tests.length - passed;
  console.log(`FAIL setting up: ${e?.stack || e}`);
} finally {
  clearTimeout(deadline);
  if (browser) await browser.close().catch(() => {});
  if (d) {
    if (failed) console.log(d.log().slice(-3000));
    await stopDaemon(d);
  }
}
console.log(`screenshots: ${SCREENS}`);
console.log(`node: ${passed} passed, ${failed} failed, 0 skipped`);
process.exit(failed ? 1 : 0);
