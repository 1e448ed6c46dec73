/**
 * An LLM fleet of servers that queue instead of refusing (as vLLM, SGLang and TGI do), each an `air sim` process
 * with `--max-queue 100000`:
 *
 *   A. one air process on 2 replicas of 32 and 16 slots;
 *   B. 4 air processes (the ranks of a distributed run) on one replica of 32 slots.
 *
 * Each with air's saturation signal (`auto`: the servers' vLLM gauges) and without it (`off`: only 429/503 cut
 * the limit, which a queueing server never sends). Server figures come from the simulators' exact time
 * integrals over a window that opens after a warm-up and closes while every caller is still busy.
 *
 *   npm run build && npx tsx bench/fleet.ts [--only A|B] [--window 15] [--warmup 5]
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MetricName } from '../llm/simulator/metrics.js';
import {
  benchClient,
  scrapeSimMetrics,
  startSimProcess,
  stopSimProcess,
  type SimProcess,
} from './sim-process.js';

/** 250-token replies at 500 tok/s: 0.5 s a call, so 5 Node processes on 2 cores are not what limits. */
const SIM = {
  decodePerS: 500,
  prefillPerS: 1_000_000,
  meanReplyTokens: Number(argValue('--reply-tokens') ?? 250),
};

type Mode = 'auto' | 'off';

/** What one air process is told: where, how hard, and the window to count its calls in (epoch ms). */
interface WorkerTask {
  readonly urls: readonly string[];
  readonly mode: Mode;
  readonly callers: number;
  readonly windowStart: number;
  readonly windowEnd: number;
  readonly seed: number;
  /** What air is told of the processes sharing the servers (llm.processes; 1: nothing). */
  readonly sharers: number;
}

interface WorkerResult {
  readonly windowCalls: number;
  readonly calls: number;
  readonly refused: number;
  readonly limits: readonly number[];
}

/** One air process: callers in a loop until the window has closed, counting the calls answered inside it. */
async function work(task: WorkerTask): Promise<WorkerResult> {
  const { client, accounting } = benchClient(task.urls, {
    maxConcurrency: 256,
    initialConcurrency: 8,
    maxTokens: 4096,
    saturation: task.mode,
    sharers: task.sharers,
  });
  let windowCalls = 0;
  let issued = 0;
  await Promise.all(
    Array.from({ length: task.callers }, async () => {
      while (Date.now() < task.windowEnd) {
        const i = issued++;
        await client.chat('guidance', [{ role: 'user', content: `Fleet call ${task.seed}-${i}.` }], {
          seed: i,
        });
        const now = Date.now();
        if (now >= task.windowStart && now < task.windowEnd) windowCalls++;
      }
    }),
  );
  const limits = client.replicaStates('guidance').map((r) => r.limit);
  await client.close();
  const entry = accounting.snapshot().entries[0]!;
  const refused =
    (entry.errors['retry:AIR_LLM_RATE_LIMITED'] ?? 0) + (entry.errors['retry:AIR_LLM_SERVER_ERROR'] ?? 0);
  return { windowCalls, calls: entry.calls, refused, limits };
}

/** Runs `task` in its own Node process (an air rank), through the same loader this script runs under. */
function workInProcess(task: WorkerTask): Promise<WorkerResult> {
  const child = spawn(
    process.execPath,
    [...process.execArgv, import.meta.filename, '--worker', JSON.stringify(task)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`worker exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').at(-1)!) as WorkerResult);
    });
  });
}

interface Scenario {
  readonly name: string;
  readonly slots: readonly number[];
  readonly processes: number;
  readonly callersPerProcess: number;
  readonly mode: Mode;
  readonly sharers: number;
}

async function run(scenario: Scenario, warmupS: number, windowS: number): Promise<string> {
  const sims: SimProcess[] = [];
  for (const slots of scenario.slots) {
    sims.push(
      await startSimProcess([
        '--max-concurrency',
        String(slots),
        '--max-queue',
        '100000',
        '--decode-tps',
        String(SIM.decodePerS),
        '--prefill-tps',
        String(SIM.prefillPerS),
        '--mean-reply-tokens',
        String(SIM.meanReplyTokens),
        '--context-tokens',
        '1000000', // the heavy tail's longest replies are retried with twice max_tokens
      ]),
    );
  }
  const start = Date.now() + 1500; // worker processes start up meanwhile
  const windowStart = start + warmupS * 1000;
  const windowEnd = windowStart + windowS * 1000;
  const tasks = Array.from({ length: scenario.processes }, (_, seed) => ({
    urls: sims.map((s) => s.url),
    mode: scenario.mode,
    callers: scenario.callersPerProcess,
    windowStart,
    windowEnd,
    seed,
    sharers: scenario.sharers,
  }));
  const results = scenario.processes === 1 ? [work(tasks[0]!)] : tasks.map((task) => workInProcess(task));
  await sleep(windowStart - Date.now());
  const before = await Promise.all(sims.map((s) => scrapeSimMetrics(s.origin)));
  await sleep(windowEnd - Date.now());
  const after = await Promise.all(sims.map((s) => scrapeSimMetrics(s.origin)));
  const workers = await Promise.all(results);
  for (const s of sims) await stopSimProcess(s.child);

  const rows: string[] = [];
  const d = (i: number, name: MetricName) => after[i]![name] - before[i]![name];
  const completions = sims.map((_, i) => d(i, 'completions_total'));
  const total = completions.reduce((a, b) => a + b, 0);
  const capacity = scenario.slots.reduce((a, b) => a + b, 0);
  scenario.slots.forEach((slots, i) => {
    const simS = d(i, 'uptime_seconds');
    const servedS =
      d(i, 'completion_tokens_total') / SIM.decodePerS + d(i, 'prompt_tokens_total') / SIM.prefillPerS;
    const served = d(i, 'sequence_seconds_total');
    rows.push(
      `| ${scenario.name} | ${scenario.mode}${scenario.sharers > 1 ? `, share of ${scenario.sharers}` : ''} | ${slots} slots | ${(servedS / (slots * simS)).toFixed(3)} | ` +
        `${(served / (slots * simS)).toFixed(3)} | ${(d(i, 'waiting_seconds_total') / served).toFixed(3)} | ` +
        `${(d(i, 'waiting_seconds_total') / simS).toFixed(1)} | ${d(i, 'queue_full_total')} | ` +
        `${((100 * completions[i]!) / total).toFixed(1)}% (capacity ${((100 * slots) / capacity).toFixed(1)}%) | ` +
        `${(completions[i]! / simS).toFixed(0)} |`,
    );
  });
  const windowCalls = workers.reduce((a, w) => a + w.windowCalls, 0);
  const shares = workers.map((w) => `${((100 * w.windowCalls) / windowCalls).toFixed(1)}%`).join(', ');
  const refused = workers.reduce((a, w) => a + w.refused, 0);
  const limits = workers.map((w) => w.limits.join('/')).join(', ');
  rows.push(
    `|  |  | per process | calls in window: ${shares} | final limits: ${limits} | 429/503 seen: ${refused} |  |  |  |  |`,
  );
  return rows.join('\n');
}

/**
 * C. One process, 2 replicas of 16 slots; `total` calls; replica 2's process is SIGKILLed at `killAtS` and
 * started again on the same port at `backAtS`. Every call must be answered, the killed replica's in-flight calls
 * by the other, and the restarted one used again.
 */
async function killedReplica(total: number, killAtS: number, backAtS: number): Promise<string> {
  const args = [
    '--max-concurrency',
    '16',
    '--max-queue',
    '100000',
    '--decode-tps',
    String(SIM.decodePerS),
    '--mean-reply-tokens',
    String(SIM.meanReplyTokens),
    '--context-tokens',
    '1000000',
  ];
  const first = await startSimProcess(args);
  const second = await startSimProcess(args);
  const { client, accounting } = benchClient([first.url, second.url], {
    maxConcurrency: 256,
    initialConcurrency: 8,
    maxTokens: 4096,
  });
  const t0 = performance.now();
  let next = 0;
  let answered = 0;
  let failed = 0;
  const callers = Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < total) {
        const i = next++;
        try {
          await client.chat('guidance', [{ role: 'user', content: `Kill test call ${i}.` }], { seed: i });
          answered++;
        } catch {
          failed++;
        }
      }
    }),
  );
  await sleep(killAtS * 1000);
  const inFlightOnKill = client.replicaStates('guidance')[1]!.inFlight;
  second.child.kill('SIGKILL');
  await sleep((backAtS - killAtS) * 1000);
  const restarted = await startSimProcess(args, Number(new URL(second.url).port));
  await callers;
  const wallS = (performance.now() - t0) / 1000;
  const back = await scrapeSimMetrics(restarted.origin);
  const states = client.replicaStates('guidance');
  const tallies = accounting.snapshot().entries[0]!.replicas!;
  await client.close();
  await stopSimProcess(first.child);
  await stopSimProcess(restarted.child);
  const killed = tallies[second.url]!;
  return [
    `| calls | answered | failed | wall s | in flight on the killed replica | its attempts that failed | ` +
      `ejections / returns | answered by it after its return |`,
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    `| ${total} | ${answered} | ${failed} | ${wallS.toFixed(1)} | ${inFlightOnKill} | ` +
      `${JSON.stringify(killed.errors)} | ${states[1]!.ejections} / ${states[1]!.returns} | ` +
      `${back.completions_total} |`,
  ].join('\n');
}

/** The value after `flag` on the command line. */
function argValue(flag: string): string | undefined {
  const at = process.argv.indexOf(flag);
  return at < 0 ? undefined : process.argv[at + 1];
}

async function main(): Promise<void> {
  const arg = argValue;
  const worker = arg('--worker');
  if (worker !== undefined) {
    console.log(JSON.stringify(await work(JSON.parse(worker) as WorkerTask)));
    return;
  }
  const only = arg('--only');
  const warmupS = Number(arg('--warmup') ?? 5);
  const windowS = Number(arg('--window') ?? 15);
  console.log(`machine: ${os.cpus()[0]?.model} · ${os.cpus().length} cores · node ${process.version}`);
  console.log(
    `servers: air sim --max-queue 100000, ${SIM.decodePerS} decode tok/s per sequence, ` +
      `${SIM.meanReplyTokens}-token log-normal replies (~${(1000 * SIM.meanReplyTokens) / SIM.decodePerS} ms a call); ` +
      `warm-up ${warmupS} s, window ${windowS} s\n`,
  );
  console.log(
    '| scenario | signal | replica | busy (service / slot-time) | slot occupancy | queue wait / service time | ' +
      'mean queue | refused (queue full) | share of calls | calls/s |',
  );
  console.log('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const A = { name: 'A: 1 process, 2 replicas', slots: [32, 16], processes: 1, callersPerProcess: 512 };
  const B = { name: 'B: 4 processes, 1 replica', slots: [32], processes: 4, callersPerProcess: 64 };
  const scenarios: Scenario[] = [
    ...(only === undefined || only === 'A'
      ? [{ ...A, mode: 'auto', sharers: 1 } as const, { ...A, mode: 'off', sharers: 1 } as const]
      : []),
    ...(only === undefined || only === 'B'
      ? [
          { ...B, mode: 'auto', sharers: 1 } as const,
          { ...B, mode: 'auto', sharers: 4 } as const,
          { ...B, mode: 'off', sharers: 1 } as const,
        ]
      : []),
  ];
  for (const scenario of scenarios) console.log(await run(scenario, warmupS, windowS));
  if (only === undefined || only === 'C') {
    console.log('\nC: a replica killed (SIGKILL) at 4 s and started again at 8 s, 1,200 calls, 64 callers\n');
    console.log(await killedReplica(1200, 4, 8));
  }
}

await main();
