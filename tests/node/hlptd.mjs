// hlptd for the Node suites (tests/node/test_*.mjs): starts the real daemon on 127.0.0.1 with a
// temporary data directory, waits for /health, and stops it (SIGTERM, then SIGKILL after 15 s).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUILD = path.resolve(ROOT, process.env.HLPT_BUILD || 'build');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// model: a model directory; args(dir): more hlptd flags, given the data directory (which it may
// fill first: an API key file, say). Gives up after 30 s.
export async function startDaemon({ model, args = () => [], prefix = 'hlptd-node-' } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  const env = { ...process.env };
  delete env.NOTIFY_SOCKET;
  const proc = spawn(path.join(BUILD, 'hlptd'),
    ['--listen', '127.0.0.1:0', '--data-dir', dir, '--model', model, '--log-level', 'info', ...args(dir)],
    { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (b) => { log += b; });
  const portFile = path.join(dir, 'hlptd.port');
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`hlptd exited with ${proc.exitCode}:\n${log}`);
    if (existsSync(portFile) && readFileSync(portFile, 'utf8').endsWith('\n')) {
      const port = parseInt(readFileSync(portFile, 'utf8'), 10);
      while (Date.now() < deadline) {
        try {
          const r = await fetch(`http://127.0.0.1:${port}/health`);
          if (r.status === 200) return { proc, dir, port, log: () => log };
        } catch { /* not listening yet */ }
        await sleep(20);
      }
    }
    await sleep(20);
  }
  proc.kill('SIGKILL');
  throw new Error(`hlptd did not start:\n${log}`);
}

export async function stopDaemon(d) {
  if (d.proc.exitCode === null) {
    const exited = new Promise((r) => d.proc.once('exit', r));
    d.proc.kill('SIGTERM');
    const code = await Promise.race([exited, sleep(15000).then(() => 'timeout')]);
    if (code === 'timeout') d.proc.kill('SIGKILL');
  }
  rmSync(d.dir, { recursive: true, force: true });
}
