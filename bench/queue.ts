/**
 * Queue mode (air enqueue / air worker on BullMQ): how long a SIGKILLed worker's unit waits before another worker
 * starts it again, per lock / stalled-check setting; and the wall time of one job run by 1 worker and by 3
 * workers against the same simulator (the same capacity); and 3 workers on units of whole shards vs units that
 * cut the biggest shard into slices of row groups. Results: bench/RESULTS-queue.md.
 *
 *   npm run build && npx tsx bench/queue.ts [--only handover|throughput|slices]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { rewriteFinewebInRowGroups, writePlantedInput } from '../test/helpers/dup-shards.js';
import { startRedis } from '../test/helpers/redis.js';
import { scrapeSimMetrics, startSimProcess, stopSimProcess } from './sim-process.js';

const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
const AIR = path.resolve(import.meta.dirname, '../dist/cli/air.js');
const dir = await mkdtemp(path.join(os.tmpdir(), 'air-bench-queue-'));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function air(args: readonly string[]): { child: ChildProcess; done: Promise<number | null> } {
  const child = spawn(process.execPath, [AIR, ...args], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      if (code !== 0 && code !== null) process.stderr.write(err);
      resolve(code);
    }),
  );
  return { child, done };
}

const redis = await startRedis(path.join(dir, 'redis'));
// Handover: a fast server, so the killed unit has committed parts within a second or two.
const sim = await startSimProcess(['--model', 'guide', 'student', '--decode-tps', '1000']);
// Throughput: 16 sequences at 150 tokens/s each (a large model's pace): the server, not this 2-core machine's CPU,
// is what one worker cannot keep busy.
const slow = await startSimProcess([
  '--model',
  'guide',
  'student',
  '--max-concurrency',
  '16',
  '--decode-tps',
  '150',
]);
await writePlantedInput(path.join(dir, 'in'));
// The same input with FineWeb (1,701 rows, ~3 MB) in row groups of 250 rows: cut by --slice-mb 1 into 4 slices.
await writePlantedInput(path.join(dir, 'in-sliced'));
await rewriteFinewebInRowGroups(path.join(dir, 'in-sliced'), 250);
const config = (url: string, rate: number) =>
  JSON.stringify({
    method: 'air',
    llm: { guidance: { baseUrl: url, model: 'guide' }, student: { baseUrl: url, model: 'student' } },
    sample: { preSample: { mode: 'rate', rate, seed: 7 } },
    air: { documentsInFlight: 4, refine: { maxIterations: 2 } },
    writer: { partRows: 3 },
    progress: 'off',
  });
await writeFile(path.join(dir, 'fast.json'), config(sim.url, 0.1));
await writeFile(path.join(dir, 'slow.json'), config(slow.url, 0.02));
// Slices: LLM-bound units (the fast server, more documents), so the biggest shard's unit is the long pole.
await writeFile(path.join(dir, 'slices.json'), config(sim.url, 0.08));

let jobs = 0;
async function planAndEnqueue(input: string, configFile: string, sliceMB = 512): Promise<string> {
  const root = `job-${jobs++}`;
  if (
    (await air(['plan', '-c', configFile, '--input', input, '--output', root, '--world-size', '1']).done) !==
    0
  )
    throw new Error('plan failed');
  if (
    (await air(['enqueue', '--queue', redis.url, '--plan', root, '--slice-mb', String(sliceMB)]).done) !== 0
  )
    throw new Error('enqueue failed');
  return root;
}

async function ownerStarted(root: string, attempt: string): Promise<number | undefined> {
  const text = await readFile(path.join(dir, root, 'units', '00000', `${attempt}.owner`), 'utf8').catch(
    () => '',
  );
  return text === '' ? undefined : Date.parse((JSON.parse(text) as { startedAt: string }).startedAt);
}

/** Two workers; the one running the unit is SIGKILLed once it committed a part; time until attempt-2 starts. */
async function handover(lock: number, stalled: number): Promise<number> {
  const root = await planAndEnqueue(path.join('in', 'fineweb-sample.snappy.parquet'), 'fast.json');
  const args = ['worker', '--queue', redis.url, '--plan', root];
  const flags = ['--lock-seconds', String(lock), '--stalled-interval', String(stalled)];
  const a = air([...args, ...flags]);
  const manifest = path.join(dir, root, 'units', '00000', 'attempt-1', 'manifest.jsonl');
  while (!(await readFile(manifest, 'utf8').catch(() => '')).includes('"part":"part-')) await sleep(20);
  const b = air([...args, ...flags]); // started after: attempt-1 is a's
  await sleep(1000); // b is up and polling
  const killedAt = Date.now();
  a.child.kill('SIGKILL');
  let started: number | undefined;
  while ((started = await ownerStarted(root, 'attempt-2')) === undefined) await sleep(20);
  b.child.kill('SIGTERM');
  await Promise.all([a.done, b.done]);
  return (started - killedAt) / 1000;
}

/** The whole planted input by `n` workers of one unit at a time each; wall seconds from their start. */
async function throughput(
  n: number,
  input = 'in',
  sliceMB = 512,
  configFile = 'slow.json',
): Promise<{ seconds: number; busy: number; units: number }> {
  const server = configFile === 'slow.json' ? slow : sim;
  const root = await planAndEnqueue(input, configFile, sliceMB);
  const before = await scrapeSimMetrics(server.origin);
  const t0 = Date.now();
  const codes = await Promise.all(
    Array.from(
      { length: n },
      () => air(['worker', '--queue', redis.url, '--plan', root, '--until-empty']).done,
    ),
  );
  const seconds = (Date.now() - t0) / 1000;
  if (codes.some((c) => c !== 0)) throw new Error(`workers exited ${codes.join(', ')}`);
  const after = await scrapeSimMetrics(server.origin);
  // Mean sequences being served while the job ran: the simulator's time integral of its running gauge.
  const busy = (after.sequence_seconds_total - before.sequence_seconds_total) / seconds;
  const units = (await readdir(path.join(dir, root, 'units'))).length;
  const queued = JSON.parse(await readFile(path.join(dir, root, 'queue.json'), 'utf8')) as {
    units: unknown[];
  };
  if (units !== queued.units.length) throw new Error(`${units} of ${queued.units.length} units ran`);
  return { seconds, busy, units };
}

try {
  if (only === undefined || only === 'handover') {
    const rows: string[] = [];
    for (const [lock, stalled] of [
      [5, 2],
      [3, 1],
      [30, 30],
    ] as const) {
      const s = await handover(lock, stalled);
      rows.push(`| ${lock} s / ${stalled} s | ${s.toFixed(1)} s |`);
      console.log(rows.at(-1));
    }
  }
  if (only === undefined || only === 'throughput') {
    const one = await throughput(1);
    const three = await throughput(3);
    console.log('\n| workers | wall s | mean sequences served (of 16) |\n|---|---|---|');
    console.log(`| 1 | ${one.seconds.toFixed(1)} | ${one.busy.toFixed(1)} |`);
    console.log(`| 3 | ${three.seconds.toFixed(1)} | ${three.busy.toFixed(1)} |`);
    console.log(`1 worker's wall time / 3 workers': ${(one.seconds / three.seconds).toFixed(2)}`);
  }
  if (only === undefined || only === 'slices') {
    // Both on the same files (FineWeb in row groups of 250 rows); only the units differ.
    const whole = await throughput(3, 'in-sliced', 512, 'slices.json');
    const sliced = await throughput(3, 'in-sliced', 1, 'slices.json');
    console.log('\n| 3 workers, units | units | wall s | mean sequences served |\n|---|---|---|---|');
    console.log(`| whole shards | ${whole.units} | ${whole.seconds.toFixed(1)} | ${whole.busy.toFixed(1)} |`);
    console.log(
      `| FineWeb in slices | ${sliced.units} | ${sliced.seconds.toFixed(1)} | ${sliced.busy.toFixed(1)} |`,
    );
    console.log(`whole / sliced wall time: ${(whole.seconds / sliced.seconds).toFixed(2)}`);
  }
} finally {
  await stopSimProcess(sim.child);
  await stopSimProcess(slow.child);
  await redis.stop();
  await rm(dir, { recursive: true, force: true });
}
