// Issue 28's soak: fusegen serve under mixed load for a fixed time, its memory sampled from its
// own /metrics (resident set, heap) between rounds. Each round runs, one after the other:
// bench --url at concurrency 8 (streamed), a Poisson burst (bench --url --request_rate,
// burstiness 0.5), non-streamed completions with logprobs and echo, streams the client drops
// after the first chunk, and malformed requests (each must get its 4xx). Memory is flat when the
// median resident set of the last quarter of the samples is within 10% of the second quarter's
// (the first quarter is warm-up: JIT, shader and allocator growth). Writes soak.json.
//
//   npm run -s build && node scripts/serve-soak.mjs [minutes=10] [model dir=fixtures/models/tiny-llama] [out dir=/tmp/soak] [serve flags...]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [minutes = '10', model = 'fixtures/models/tiny-llama', out = '/tmp/soak', ...serveFlags] = process.argv.slice(2);
const cli = 'dist/src/cli/main.js';
mkdirSync(out, { recursive: true });
const server = spawn('node', [cli, 'serve', '--model', model, '--port', '0', '--max_batch_size', '8', '--max_model_len', '256', ...(serveFlags.length ? serveFlags : ['--use_kernel'])], { stdio: ['ignore', 'pipe', 'inherit'] });
// Whatever fails here, the server does not outlive the script.
process.on('exit', () => server.exitCode === null && server.kill('SIGKILL'));
const url = await new Promise((resolve, reject) => {
  let seen = '';
  server.stdout.on('data', (d) => {
    seen += d;
    const m = /at (http:\/\/\S+)\/v1/.exec(seen);
    if (m) resolve(m[1]);
  });
  server.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${seen}`)));
});
console.error(`soak: ${url} for ${minutes} min`);

const samples = [];
const failures = [];
const counts = { rounds: 0, benchRequests: 0, benchFailed: 0, completions: 0, dropped: 0, malformed: 0 };
const metric = (text, name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
async function sample(t0) {
  const text = await (await fetch(`${url}/metrics`)).text();
  samples.push({ s: (performance.now() - t0) / 1000, rssMiB: metric(text, 'fusegen_process_resident_memory_bytes') / 2 ** 20, heapMiB: metric(text, 'fusegen_nodejs_heap_size_used_bytes') / 2 ** 20, running: metric(text, 'fusegen_num_requests_running'), waiting: metric(text, 'fusegen_num_requests_waiting') });
}
function bench(args) {
  const dir = join(out, 'bench');
  const r = spawnSync('node', [cli, 'bench', '--url', url, '--tokenizer', model, '--max_new_tokens', '48', '--ignore_eos', '--max_seconds', '20', '--timeout_s', '30', '--report_dir', dir, ...args], { encoding: 'utf8' });
  if (r.status !== 0) failures.push(`bench ${args.join(' ')}: exit ${r.status}: ${r.stderr.trim().split('\n').pop()}`);
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.json'))) {
    const report = JSON.parse(readFileSync(join(dir, f), 'utf8'));
    for (const p of report.points ?? []) {
      counts.benchRequests += p.completed ?? 0;
      counts.benchFailed += p.failed ?? 0;
    }
  }
  rmSync(dir, { recursive: true, force: true });
}
const post = (body, signal) => fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), ...(signal ? { signal } : {}) });

const t0 = performance.now();
const deadline = t0 + Number(minutes) * 60_000;
await sample(t0);
while (performance.now() < deadline) {
  counts.rounds++;
  bench(['--concurrency', '8', '--num_prompts', '32']);
  bench(['--request_rate', '20', '--burstiness', '0.5', '--num_prompts', '24', '--seed', String(counts.rounds)]);
  const whole = await Promise.all([0, 1, 2, 3].map((i) => post({ prompt: `Round ${counts.rounds} request ${i}`, max_tokens: 24, temperature: i % 2 ? 0.8 : 0, seed: i, logprobs: 2, echo: i === 3 })));
  for (const r of whole) {
    counts.completions++;
    if (r.status !== 200) failures.push(`completion: ${r.status} ${await r.text()}`);
    else await r.json();
  }
  for (let i = 0; i < 4; i++) {
    const ac = new AbortController();
    const r = await post({ prompt: 'A stream the client drops', max_tokens: 200, temperature: 0, ignore_eos: true, stream: true }, ac.signal);
    const reader = r.body.getReader();
    await reader.read();
    ac.abort();
    counts.dropped++;
  }
  for (const bad of ['{"prompt": ', { prompt: 'a', max_tokens: 100000 }, { prompt: 'a', frequency_penalty: 1 }]) {
    const r = await post(bad);
    counts.malformed++;
    if (r.status < 400 || r.status >= 500) failures.push(`malformed request answered ${r.status}`);
    await r.text();
  }
  await sample(t0);
}
server.kill('SIGINT');
const exit = await new Promise((resolve) => server.on('exit', resolve));

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const q = Math.floor(samples.length / 4);
const second = median(samples.slice(q, 2 * q).map((s) => s.rssMiB));
const last = median(samples.slice(3 * q).map((s) => s.rssMiB));
const report = {
  command: `node scripts/serve-soak.mjs ${process.argv.slice(2).join(' ')}`,
  model,
  minutes: Number(minutes),
  counts,
  failures,
  serverExit: exit,
  rss: { secondQuarterMedianMiB: second, lastQuarterMedianMiB: last, growth: last / second - 1, max: Math.max(...samples.map((s) => s.rssMiB)) },
  flat: last / second - 1 < 0.1,
  ok: failures.length === 0 && counts.benchFailed === 0 && last / second - 1 < 0.1 && exit === 0,
  samples,
};
writeFileSync(join(out, 'soak.json'), JSON.stringify(report, null, 1));
console.log(JSON.stringify({ ...report, samples: samples.length }));
process.exit(report.ok ? 0 : 1);
