// The official OpenAI Node SDK (npm `openai`, installed by tests/run.sh into $HLPT_BUILD/node_modules)
// against a real hlptd on 127.0.0.1 serving the fixture model: files, every fine-tuning call with
// auto-pagination, pause/resume/cancel, models, completions and chat with and without streaming,
// responses, and the SDK's error classes. Each test is bounded in time; the last line is
// "node: N passed, N failed, N skipped" for the runner.
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { BUILD, ROOT, sleep, startDaemon, stopDaemon } from './hlptd.mjs';
import assert from 'node:assert/strict';

const require = createRequire(path.join(BUILD, 'node_modules', 'noop.js'));
const OpenAI = require('openai').default;
const MODEL = path.join(ROOT, 'tests', 'fixtures', 'llama2-mha-f32');
const TEST_TIMEOUT_MS = 60000;
const SHORT = { n_epochs: 1, batch_size: 2, max_steps: 6, save_every: 2, warmup_steps: 0, max_length: 32 };
const LONG = { n_epochs: 1000, batch_size: 2, max_steps: 8000, save_every: 50, max_length: 32 };

// ---- the daemon ---------------------------------------------------------------------------------


// ---- helpers ------------------------------------------------------------------------------------

async function collect(page) {
  const out = [];
  for await (const x of page) {
    out.push(x);
    if (out.length > 10000) throw new Error('auto-pagination never ends');
  }
  return out;
}

async function waitFor(pred, what, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function waitJob(client, id, status) {
  return waitFor(async () => {
    const j = await client.fineTuning.jobs.retrieve(id);
    if (j.status === status) return j;
    if (['succeeded', 'failed', 'cancelled'].includes(j.status)) throw new Error(`job ${id} is ${j.status}: ${JSON.stringify(j.error)}`);
    return null;
  }, `job ${id} to be ${status}`, 60000);
}

async function rejects(promise, cls, status, param) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.status, status);
    if (param !== undefined) assert.equal(e.param, param);
    return e;
  }
  throw new Error(`expected ${cls.name}`);
}

function lines(n, f) {
  let s = '';
  for (let i = 0; i < n; i++) s += JSON.stringify(f(i)) + '\n';
  return s;
}

// ---- the tests ----------------------------------------------------------------------------------

const tests = [];
const test = (name, fn) => tests.push({ name, fn });
let d, client, ctx = {};

test('files: create from a stream, list with paging, retrieve, content, delete', async () => {
  const file = path.join(d.dir, 'train.jsonl');
  writeFileSync(file, lines(16, (i) => ({ text: `the quick brown fox jumps over the lazy dog ${i} times` })));
  const valid = path.join(d.dir, 'valid.jsonl');
  writeFileSync(valid, lines(4, (i) => ({ text: `a lazy dog sleeps ${i} hours` })));
  const f = await client.files.create({ file: createReadStream(file), purpose: 'fine-tune' });
  assert.equal(f.object, 'file');
  assert.equal(f.filename, 'train.jsonl');
  assert.equal(f.bytes, readFileSync(file).length);
  const v = await client.files.create({ file: createReadStream(valid), purpose: 'fine-tune' });
  const extra = await client.files.create({ file: createReadStream(valid), purpose: 'fine-tune' });
  ctx.train = f.id;
  ctx.valid = v.id;
  const all = await collect(client.files.list({ limit: 1 }));
  assert.deepEqual(all.slice(0, 3).map((x) => x.id), [extra.id, v.id, f.id]);
  assert.equal((await client.files.retrieve(f.id)).id, f.id);
  const content = await client.files.content(f.id);
  assert.equal(await content.text(), readFileSync(file, 'utf8'));
  const del = await client.files.delete(extra.id);
  assert.deepEqual(del, { id: extra.id, object: 'file', deleted: true });
  await rejects(client.files.retrieve(extra.id), OpenAI.NotFoundError, 404);
  await rejects(client.files.create({ file: await OpenAI.toFile(Buffer.from('{"nope": 1}\n'), 'bad.jsonl'), purpose: 'fine-tune' }),
    OpenAI.BadRequestError, 400, 'file');
});

test('fine-tuning: create (supervised), retrieve, list, events, checkpoints, results file', async () => {
  const job = await client.fineTuning.jobs.create({
    model: 'base', training_file: ctx.train, validation_file: ctx.valid, suffix: 'sdk', seed: 7,
    metadata: { team: 'sdk' },
    method: { type: 'supervised', supervised: { hyperparameters: SHORT } },
  });
  assert.equal(job.object, 'fine_tuning.job');
  assert.equal(job.method.type, 'supervised');
  assert.deepEqual(job.metadata, { team: 'sdk' });
  assert.equal(job.user_provided_suffix, 'sdk');
  assert.equal(job.organization_id, 'org-hlpt');
  const done = await waitJob(client, job.id, 'succeeded');
  ctx.job = done;
  assert.ok(done.fine_tuned_model.startsWith('ft:'));
  assert.ok(done.trained_tokens > 0);
  assert.equal(done.result_files.length, 1);
  const csv = await (await client.files.content(done.result_files[0])).text();
  assert.ok(csv.startsWith('step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n'));

  const other = await client.fineTuning.jobs.create({ training_file: ctx.train, hyperparameters: SHORT, method: { type: 'lora', lora: { r: 2 } } });
  await waitJob(client, other.id, 'succeeded');
  const jobs = await collect(client.fineTuning.jobs.list({ limit: 1 }));
  assert.deepEqual(jobs.slice(0, 2).map((j) => j.id), [other.id, job.id]);
  const tagged = await collect(client.fineTuning.jobs.list({ metadata: { team: 'sdk' } }));
  assert.deepEqual(tagged.map((j) => j.id), [job.id]);

  const events = await collect(client.fineTuning.jobs.listEvents(job.id, { limit: 2 }));
  const firstPage = await client.fineTuning.jobs.listEvents(job.id, { limit: 100 });
  assert.deepEqual(events.map((e) => e.id), firstPage.data.map((e) => e.id));
  assert.ok(events.length > 5);
  assert.equal(events.at(-1).message, 'Created fine-tuning job; files validated', 'newest first');

  const ckpts = await collect(client.fineTuning.jobs.checkpoints.list(job.id, { limit: 1 }));
  assert.deepEqual(ckpts.map((c) => c.step_number), [6, 4, 2]);
  assert.equal(ckpts[0].fine_tuned_model_checkpoint, `${done.fine_tuned_model}:ckpt-step-6`);
  assert.ok('full_valid_loss' in ckpts[0].metrics && 'valid_mean_token_accuracy' in ckpts[0].metrics);
  const out = await client.completions.create({ model: ckpts[2].fine_tuned_model_checkpoint, prompt: 'the quick', max_tokens: 3 });
  assert.equal(out.choices.length, 1);

  await rejects(client.fineTuning.jobs.create({ training_file: ctx.train, method: { type: 'dpo', dpo: {} } }),
    OpenAI.BadRequestError, 400, 'method.type');
  await rejects(client.fineTuning.jobs.retrieve('ftjob-nope'), OpenAI.NotFoundError, 404);
});

test('fine-tuning: pause, resume, cancel, and 409 on acting twice', async () => {
  const job = await client.fineTuning.jobs.create({ training_file: ctx.train, hyperparameters: LONG, method: { type: 'lora', lora: { r: 2 } } });
  await waitFor(async () => (await client.fineTuning.jobs.retrieve(job.id)).status === 'running', 'the job to run');
  const paused = await client.fineTuning.jobs.pause(job.id);
  assert.equal(paused.status, 'paused');
  await rejects(client.fineTuning.jobs.pause(job.id), OpenAI.ConflictError, 409);
  const resumed = await client.fineTuning.jobs.resume(job.id);
  assert.equal(resumed.status, 'queued');
  const cancelled = await client.fineTuning.jobs.cancel(job.id);
  assert.equal(cancelled.status, 'cancelled');
  await rejects(client.fineTuning.jobs.cancel(job.id), OpenAI.ConflictError, 409);
  await rejects(client.fineTuning.jobs.resume(job.id), OpenAI.ConflictError, 409);
});

test('models: list, retrieve, delete', async () => {
  const models = await collect(client.models.list());
  const base = models[0];
  assert.equal(base.object, 'model');
  assert.ok(base.created > 1e9);
  assert.ok(models.some((m) => m.id === ctx.job.fine_tuned_model));
  assert.equal((await client.models.retrieve(ctx.job.fine_tuned_model)).id, ctx.job.fine_tuned_model);
  assert.equal((await client.models.retrieve(base.id)).id, base.id);
  await rejects(client.models.retrieve('ft:none:x:y'), OpenAI.NotFoundError, 404, 'model');
  await rejects(client.models.delete(base.id), OpenAI.PermissionDeniedError, 403, 'model');
  const job = await client.fineTuning.jobs.create({ training_file: ctx.train, hyperparameters: SHORT, method: { type: 'lora', lora: { r: 2 } } });
  const done = await waitJob(client, job.id, 'succeeded');
  const del = await client.models.delete(done.fine_tuned_model);
  assert.deepEqual(del, { id: done.fine_tuned_model, object: 'model', deleted: true });
  await rejects(client.models.retrieve(done.fine_tuned_model), OpenAI.NotFoundError, 404);
  // The training file of finished jobs only can go now.
  const file = path.join(d.dir, 'once.jsonl');
  writeFileSync(file, lines(8, (i) => ({ text: `once upon a time ${i}` })));
  const f = await client.files.create({ file: createReadStream(file), purpose: 'fine-tune' });
  const j2 = await client.fineTuning.jobs.create({ training_file: f.id, hyperparameters: SHORT, method: { type: 'lora', lora: { r: 2 } } });
  await waitJob(client, j2.id, 'succeeded');
  assert.equal((await client.files.delete(f.id)).deleted, true);
});

test('completions: plain, prompt arrays, streaming with usage', async () => {
  const model = ctx.job.fine_tuned_model;
  const one = await client.completions.create({ model, prompt: 'the quick', max_tokens: 4, temperature: 0 });
  assert.equal(one.object, 'text_completion');
  assert.equal(one.choices[0].index, 0);
  assert.equal(one.usage.completion_tokens, 4);
  const batch = await client.completions.create({ model, prompt: ['the quick', 'a lazy dog'], n: 2, max_tokens: 4, temperature: 0 });
  assert.deepEqual(batch.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.equal(batch.choices[0].text, one.choices[0].text);
  const stream = await client.completions.create({ model, prompt: 'the quick', max_tokens: 4, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  let text = '', usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) text += c.text;
  }
  assert.equal(text, one.choices[0].text);
  assert.equal(usage.completion_tokens, 4);
});

test('chat: plain, OpenAI message shapes, streaming with usage, errors', async () => {
  const messages = [
    { role: 'developer', content: 'Be brief.' },
    { role: 'user', content: [{ type: 'text', text: 'Weather in Oslo?' }] },
    { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }] },
    { role: 'tool', tool_call_id: 'c1', content: '5C' },
  ];
  const r = await client.chat.completions.create({ model: 'base', messages, max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 1,
    store: false, metadata: { a: 'b' }, user: 'u' });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.refusal, null);
  assert.ok(Array.isArray(r.choices[0].logprobs.content[0].bytes));
  const stream = await client.chat.completions.create({ model: 'base', messages, max_tokens: 4, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  let text = '', usage = null, role = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      role = role || c.delta.role;
      text += c.delta.content || '';
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(text, r.choices[0].message.content);
  assert.equal(usage.completion_tokens, r.usage.completion_tokens);
  await rejects(client.chat.completions.create({ model: 'base', messages, tools: [{ type: 'function', function: { name: 'f' } }] }),
    OpenAI.BadRequestError, 400, 'tools');
  await rejects(client.chat.completions.create({ model: 'nope', messages }), OpenAI.NotFoundError, 404, 'model');
});

test('responses: plain and streaming', async () => {
  const r = await client.responses.create({ model: ctx.job.fine_tuned_model, instructions: 'Be brief.', input: 'the quick',
    max_output_tokens: 4, temperature: 0 });
  assert.equal(r.object, 'response');
  assert.equal(typeof r.output_text, 'string');
  assert.equal(r.usage.output_tokens, 4);
  const stream = await client.responses.create({ model: ctx.job.fine_tuned_model, instructions: 'Be brief.', input: 'the quick',
    max_output_tokens: 4, temperature: 0, stream: true });
  const types = [];
  let text = '', last = null;
  for await (const e of stream) {
    types.push(e.type);
    if (e.type === 'response.output_text.delta') text += e.delta;
    last = e;
  }
  assert.equal(types[0], 'response.created');
  assert.ok(types.includes('response.output_text.delta'));
  assert.equal(text, r.output_text);
  assert.equal(last.response.usage.output_tokens, 4);
  await rejects(client.responses.create({ model: 'base', input: 'x', previous_response_id: 'resp_x' }),
    OpenAI.BadRequestError, 400, 'previous_response_id');
});

// ---- the runner ---------------------------------------------------------------------------------

let passed = 0, failed = 0;
try {
  d = await startDaemon({ model: MODEL, prefix: 'hlptd-sdk-' });
  // maxRetries 0: a 409 is an answer here, not a reason to try again.
  client = new OpenAI({ baseURL: `http://127.0.0.1:${d.port}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30000 });
  for (const t of tests) {
    const started = Date.now();
    try {
      await Promise.race([t.fn(), sleep(TEST_TIMEOUT_MS).then(() => { throw new Error(`timed out after ${TEST_TIMEOUT_MS} ms`); })]);
      passed++;
      console.log(`ok   ${t.name} (${Date.now() - started} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${t.name}\n${e?.stack || e}`);
    }
  }
} catch (e) {
  failed = tests.length - passed;
  console.log(`FAIL setting up: ${e?.stack || e}`);
} finally {
  if (d) {
    if (failed) console.log(d.log().slice(-3000));
    await stopDaemon(d);
  }
}
console.log(`node: ${passed} passed, ${failed} failed, 0 skipped`);
process.exit(failed ? 1 : 0);
