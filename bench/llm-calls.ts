/**
 * How fast one air process drives an OpenAI-compatible server, against the simulator running in its own
 * process (`air sim`), so the CPU measured here is the client's alone.
 *
 *   npm run build && npx tsx bench/llm-calls.ts
 *
 * 1. Client overhead: calls/s and client CPU ms per call against a zero-latency simulator, at rising
 *    concurrency, for air's client (undici + admission + retries + accounting) and for the openai SDK
 *    (when installed) on the same undici dispatcher.
 * 2. Saturation: against a capacity-limited simulator (known ceiling), the fraction of the ceiling air keeps
 *    busy at steady state (a window after AIMD's first cut, closed before the callers stop), the share of calls
 *    answered 429/503, and a per-second trace of air's admission and the simulator's scheduler (`/metrics`);
 *    `--trace <file>` writes every 100 ms sample.
 */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MetricName } from '../llm/simulator/metrics.js';
import { benchClient, scrapeSimMetrics, startSimProcess, stopSimProcess } from './sim-process.js';

const messages = (i: number) => [
  { role: 'user' as const, content: `Bench call ${i}: write one sentence about sourdough.` },
];

/** Closed loop: `concurrency` callers issue `total` calls; returns calls/s and client CPU ms per call. */
async function drive(call: (i: number) => Promise<unknown>, concurrency: number, total: number) {
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await call(next++);
    }),
  );
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { callsPerS: total / wallS, cpuMsPerCall: (cpu.user + cpu.system) / 1000 / total, wallS };
}

async function overhead(): Promise<void> {
  const sim = await startSimProcess(['--zero-latency', '--mean-reply-tokens', '30']);
  console.log(`\n## 1. Client overhead against a zero-latency simulator (separate process)\n${sim.banner}\n`);
  console.log('| client | in flight | calls/s | client CPU ms/call |\n| --- | ---: | ---: | ---: |');
  for (const concurrency of [64, 256, 1024]) {
    const { client: c } = benchClient(sim.url, { maxConcurrency: concurrency, maxTokens: 4096 });
    await drive((i) => c.chat('guidance', messages(i)), concurrency, 2000); // warm-up
    const r = await drive((i) => c.chat('guidance', messages(i)), concurrency, 20_000);
    console.log(
      `| air (undici) | ${concurrency} | ${r.callsPerS.toFixed(0)} | ${r.cpuMsPerCall.toFixed(3)} |`,
    );
    await c.close();
  }
  // Imported by name so the bench runs without the SDK installed.
  const sdkName = 'openai';
  const sdk = (await import(sdkName).catch(() => undefined)) as
    | {
        default: new (options: unknown) => {
          chat: { completions: { create(body: unknown): Promise<unknown> } };
        };
      }
    | undefined;
  if (sdk !== undefined) {
    const { Agent } = await import('undici');
    for (const concurrency of [64, 256]) {
      const dispatcher = new Agent({ connections: concurrency });
      const openai = new sdk.default({
        baseURL: sim.url,
        apiKey: 'none',
        maxRetries: 0,
        fetchOptions: { dispatcher },
      });
      const call = (i: number) =>
        openai.chat.completions.create({
          model: 'bench',
          messages: messages(i),
          max_tokens: 4096,
          temperature: 0.2,
        });
      await drive(call, concurrency, 2000);
      const r = await drive(call, concurrency, 20_000);
      console.log(
        `| openai SDK + undici Agent | ${concurrency} | ${r.callsPerS.toFixed(0)} | ${r.cpuMsPerCall.toFixed(3)} |`,
      );
      await dispatcher.close();
    }
  } else {
    console.log('| openai SDK | - | not installed (npm i -D openai@6 to compare) | - |');
  }
  await stopSimProcess(sim.child);
}

/** Saturation run: the simulator, air's callers and how long they run. */
const SAT = {
  slots: 32,
  decodePerS: 1000,
  prefillPerS: 1_000_000,
  meanReplyTokens: 50,
  maxQueue: 64,
  callers: 512, // more callers than the server can take: air's admission decides what is sent
  sampleMs: 100,
  windowS: 20,
  warmupMaxS: 30,
} as const;

/** One sample of both sides, taken every `SAT.sampleMs`: air's admission and the simulator's scheduler. */
interface Sample {
  /** Seconds since the callers started (client clock). */
  readonly t: number;
  readonly limit: number;
  readonly inFlight: number;
  /** Callers waiting for admission. */
  readonly waiting: number;
  readonly paused: boolean;
  readonly cuts: number;
  /** Cumulative answered calls and 429/503 answers (retried), from air's accounting. */
  readonly calls: number;
  readonly refused: number;
  readonly sim: Record<MetricName, number>;
}

async function saturation(): Promise<void> {
  // 32 sequences, 1,000 decode tokens/s each, heavy-tailed replies of 50 tokens on average: 50 ms per call on
  // average, ceiling 640 calls/s; a queue of 64 beyond the slots, then 503 (as vLLM behaves).
  const sim = await startSimProcess([
    '--max-concurrency',
    String(SAT.slots),
    '--decode-tps',
    String(SAT.decodePerS),
    '--prefill-tps',
    String(SAT.prefillPerS),
    '--mean-reply-tokens',
    String(SAT.meanReplyTokens),
    '--max-queue',
    String(SAT.maxQueue),
  ]);
  console.log(`\n## 2. Saturation of a capacity-limited simulator\n${sim.banner}\n`);
  const { client: c, accounting } = benchClient(sim.url, {
    maxConcurrency: 256,
    initialConcurrency: 8,
    maxTokens: 4096,
    // `--saturation off`: refusals alone, as before the saturation signal (RESULTS-fleet.md).
    saturation: argValue('--saturation') as 'auto' | 'off' | undefined,
  });
  const admission = c.admission('guidance')!;
  const t0 = performance.now();
  let stopping = false;
  let issued = 0;
  const callers = Promise.all(
    Array.from({ length: SAT.callers }, async () => {
      while (!stopping) await c.chat('guidance', messages(issued++));
    }),
  );
  const sample = async (): Promise<Sample> => {
    const metrics = await scrapeSimMetrics(sim.origin);
    const entry = accounting.snapshot().entries[0];
    const errors = entry?.errors ?? {};
    return {
      t: (performance.now() - t0) / 1000,
      limit: admission.limit,
      inFlight: admission.active,
      waiting: admission.queued,
      paused: admission.paused,
      cuts: admission.counters.cuts,
      calls: entry?.calls ?? 0,
      refused: (errors['retry:AIR_LLM_RATE_LIMITED'] ?? 0) + (errors['retry:AIR_LLM_SERVER_ERROR'] ?? 0),
      sim: metrics,
    };
  };
  // Warm-up ends at AIMD's first cut: the limit has found the level the server refuses, and from then on it
  // cycles (cut, climb, cut), which is the steady state. The window closes while every caller is still busy, so
  // neither the ramp from 8 nor the drain at the end is in it.
  const samples: Sample[] = [];
  let firstAt = -1;
  for (;;) {
    const s = await sample();
    samples.push(s);
    if (firstAt < 0 && (s.cuts > 0 || s.t >= SAT.warmupMaxS)) firstAt = samples.length - 1;
    if (firstAt >= 0 && s.t - samples[firstAt]!.t >= SAT.windowS) break;
    await sleep(SAT.sampleMs - ((performance.now() - t0) % SAT.sampleMs));
  }
  const first = samples[firstAt]!;
  const last = samples[samples.length - 1]!;
  stopping = true;
  await callers;
  await c.close();
  const simStats = await stopSimProcess(sim.child);

  const d = (name: MetricName) => last.sim[name] - first.sim[name];
  const simS = d('uptime_seconds');
  const wallS = last.t - first.t;
  const servedS = d('completion_tokens_total') / SAT.decodePerS + d('prompt_tokens_total') / SAT.prefillPerS;
  const window = samples.filter((s) => s.t >= first.t && s.t <= last.t);
  const limits = window.map((s) => s.limit);
  const calls = last.calls - first.calls;
  const refused = last.refused - first.refused;
  const warmup = first.cuts > 0 ? `first cut at ${first.t.toFixed(1)} s` : `no cut in ${SAT.warmupMaxS} s`;
  console.log(
    `Window: ${wallS.toFixed(1)} s from the end of warm-up (${warmup}), callers still busy at its end.\n`,
  );
  console.log(
    '| calls/s | server busy (service time / slot-time) | slot occupancy (simulator) | mean queue | ' +
      'admission limit min–max (final) | time paused | calls refused (429/503) |',
  );
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  console.log(
    `| ${(calls / wallS).toFixed(0)} | ${(servedS / (SAT.slots * simS)).toFixed(3)} | ` +
      `${(d('sequence_seconds_total') / (SAT.slots * simS)).toFixed(3)} | ` +
      `${(d('waiting_seconds_total') / simS).toFixed(1)} | ` +
      `${Math.min(...limits)}–${Math.max(...limits)} (${last.limit}) | ` +
      `${((100 * window.filter((s) => s.paused).length) / window.length).toFixed(1)}% | ` +
      `${refused} of ${calls + refused} (${((100 * refused) / (calls + refused)).toFixed(2)}%) |`,
  );
  console.log(`\nPer second (warm-up included; server columns are exact means from its time integrals):\n`);
  console.log(
    '| t (s) | limit | in flight (air) | paused | server running | server waiting | calls/s | refused |',
  );
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const perSecond = 1000 / SAT.sampleMs;
  for (let i = perSecond; i < samples.length; i += perSecond) {
    console.log(traceRow(samples[i - perSecond]!, samples[i]!, samples.slice(i - perSecond + 1, i + 1)));
  }
  const traceFile = argValue('--trace');
  if (traceFile !== undefined) {
    const rows = samples.slice(1).map((s, i) => traceRow(samples[i]!, s, [s]));
    await writeFile(traceFile, rows.join('\n') + '\n');
    console.log(`\n${SAT.sampleMs} ms samples written to ${traceFile}`);
  }
  console.log(
    `\nthe simulator's own account, over its whole life (warm-up and drain included):\n${simStats}`,
  );
}

/** One table row for the interval (a, b]: air's side at b (limit, in flight), the server's exact means over it. */
function traceRow(a: Sample, b: Sample, between: readonly Sample[]): string {
  const simS = b.sim.uptime_seconds - a.sim.uptime_seconds;
  const mean = (name: MetricName) => ((b.sim[name] - a.sim[name]) / simS).toFixed(1);
  const paused = between.filter((s) => s.paused).length / between.length;
  return (
    `| ${b.t.toFixed(1)} | ${b.limit} | ${b.inFlight} | ${(100 * paused).toFixed(0)}% | ` +
    `${mean('sequence_seconds_total')} | ${mean('waiting_seconds_total')} | ` +
    `${((b.calls - a.calls) / (b.t - a.t)).toFixed(0)} | ${b.refused - a.refused} |`
  );
}

/** The value after `flag` on the command line. */
function argValue(flag: string): string | undefined {
  const at = process.argv.indexOf(flag);
  return at < 0 ? undefined : process.argv[at + 1];
}

console.log(`machine: ${os.cpus()[0]?.model} · ${os.cpus().length} cores · node ${process.version}`);
// `--only overhead` or `--only saturation` runs one part.
const only = argValue('--only');
if (only === undefined || only === 'overhead') await overhead();
if (only === undefined || only === 'saturation') await saturation();
