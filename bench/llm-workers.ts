/**
 * Where should LLM calls run: on one event loop (design A) or spread over worker threads (design B)?
 *
 *   npm run build && npx tsx bench/llm-workers.ts [--reps 3] [--series zero,latency] [--quick] [--json out.jsonl]
 *     [--quiet 0.25] [--attempts 4] [--cells <text in a cell's label>]
 *
 * LW_CAP=<n> changes the global in-flight cap of the open loops (default 1024); LW_DEBUG=1 prints a timeline.
 *
 * The simulator runs in its own process (`air sim`), so the CPU measured here (process.cpuUsage: the whole
 * client process, every thread) is the client's; the simulator's own CPU is read from /proc/<pid>/stat.
 *
 * Design A: the real HttpLlmClient on the main thread; admission is the client's own (maxConcurrency = cap).
 * Design B: W worker threads (node:worker_threads), each with its own HttpLlmClient and undici pool; the global
 *   in-flight cap is a SharedArrayBuffer + Atomics counter shared by the workers (SharedCap below), the
 *   per-worker clients get maxConcurrency = cap so their own admission never binds. `Bws` splits the cap
 *   instead (each worker's client gets cap/W, no shared counter). The main thread only starts workers,
 *   samples CPU and collects results.
 *
 * Per cell: closed loop of C callers, or open loop at a fixed offered rate (arrivals on a schedule; latency is
 * measured from the scheduled arrival, so queueing in admission or behind a late generator counts). Each cell
 * runs a warm-up, then a measured window; calls started in the window are waited for (drain) so the latency
 * percentiles include the slow ones.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { HttpLlmClient } from '../llm/client.js';
import { benchClient, startSimProcess, stopSimProcess } from './sim-process.js';

const CAP = Number(process.env.LW_CAP ?? 1024); // global in-flight cap of the open loops (closed loops: cap = C)
const MAX_TOKENS = 4096; // far above the lognormal tail of 30-token mean replies: no 'length' retries

// ---- shared in-flight cap ------------------------------------------------------------------------------

/**
 * A counting semaphore over a SharedArrayBuffer: cells[0] = calls in flight in all threads, cells[1] = peak.
 * acquire() takes a slot by compare-and-swap; when none is free it parks with Atomics.waitAsync on the counter
 * (woken by release's Atomics.notify, or at once if the counter moved since it was read).
 */
class SharedCap {
  private readonly cells: Int32Array;

  constructor(
    buffer: SharedArrayBuffer,
    private readonly cap: number,
  ) {
    this.cells = new Int32Array(buffer);
  }

  static buffer(): SharedArrayBuffer {
    return new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT);
  }

  async acquire(): Promise<void> {
    for (;;) {
      const current = Atomics.load(this.cells, 0);
      if (current < this.cap) {
        if (Atomics.compareExchange(this.cells, 0, current, current + 1) === current) {
          if (current + 1 > Atomics.load(this.cells, 1)) Atomics.store(this.cells, 1, current + 1);
          return;
        }
        continue;
      }
      const wait = waitAsync(this.cells, 0, current);
      if (wait.async) await wait.value;
    }
  }

  release(): void {
    Atomics.sub(this.cells, 0, 1);
    Atomics.notify(this.cells, 0, 1);
  }

  get peak(): number {
    return Atomics.load(this.cells, 1);
  }
}

/** Atomics.waitAsync (Node >= 16) is missing from TypeScript's ES2023 lib. */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      array: Int32Array,
      index: number,
      value: number,
    ): { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<string> };
  }
).waitAsync;

// ---- one thread's share of a cell ------------------------------------------------------------------------

type Load = { kind: 'closed'; callers: number } | { kind: 'open'; rate: number };

interface ShareConfig {
  readonly url: string;
  readonly load: Load; // this thread's share
  readonly clientCap: number; // maxConcurrency of this thread's HttpLlmClient
  readonly shared?: { buffer: SharedArrayBuffer; cap: number };
  readonly warmMs: number;
  readonly measureMs: number;
  readonly heavyUs: number; // synthetic CPU per reply (busy loop), 0 for none
  readonly index: number;
  readonly threads: number;
}

interface ShareResult {
  starts: Float64Array; // absolute ms (scheduled arrival for open loops)
  ends: Float64Array; // absolute ms, NaN when the call had not finished at the drain deadline
  errors: number;
  firstError?: string;
  loopDelay: LoopDelay;
}

interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
}

/** Wall-clock milliseconds comparable across threads (each thread has its own timeOrigin). */
const absNow = (): number => performance.timeOrigin + performance.now();

const sleepUntil = (t: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, Math.max(0, t - absNow())));

function spin(us: number): void {
  if (us <= 0) return;
  const until = performance.now() + us / 1000;
  while (performance.now() < until) {
    // synthetic per-reply CPU (stands in for validating a large structured reply)
  }
}

const PREWARM_CALLS = 800;

/**
 * Builds this thread's client and warms it (JIT, connections) with PREWARM_CALLS calls from 64 callers, then
 * returns the measured run, started at `startAt`: the same code on the main thread (A) and in each worker (B).
 */
async function prepareShare(config: ShareConfig): Promise<(startAt: number) => Promise<ShareResult>> {
  const { client } = benchClient(config.url, { maxConcurrency: config.clientCap, maxTokens: MAX_TOKENS });
  let warm = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (warm < PREWARM_CALLS) {
        warm++;
        await client
          .chat('guidance', [{ role: 'user', content: `Warm-up ${config.index}.${warm}: one sentence.` }])
          .catch(() => undefined);
      }
    }),
  );
  return (startAt) => runShare(config, client, startAt);
}

async function runShare(config: ShareConfig, client: HttpLlmClient, startAt: number): Promise<ShareResult> {
  const cap =
    config.shared === undefined ? undefined : new SharedCap(config.shared.buffer, config.shared.cap);
  const starts: number[] = [];
  const ends: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const stopAt = startAt + config.warmMs + config.measureMs;
  let seq = config.index;

  const call = async (scheduled: number): Promise<void> => {
    const slot = starts.length;
    starts.push(scheduled);
    ends.push(Number.NaN);
    const i = seq;
    seq += config.threads;
    try {
      if (cap !== undefined) await cap.acquire();
      try {
        await client.chat('guidance', [
          { role: 'user', content: `Bench call ${i}: write one sentence about sourdough.` },
        ]);
        spin(config.heavyUs);
      } finally {
        cap?.release();
      }
    } catch (error) {
      errors++;
      firstError ??= String(error);
    }
    ends[slot] = absNow();
  };

  const monitor = monitorEventLoopDelay({ resolution: 1 });
  const t1 = startAt + config.warmMs;
  const monitorOn = setTimeout(() => monitor.enable(), Math.max(0, t1 - absNow()));
  const monitorOff = setTimeout(() => monitor.disable(), Math.max(0, stopAt - absNow()));

  await sleepUntil(startAt);
  const pending: Promise<void>[] = [];
  if (config.load.kind === 'closed') {
    for (let c = 0; c < config.load.callers; c++) {
      pending.push(
        (async () => {
          while (absNow() < stopAt) await call(absNow());
        })(),
      );
    }
  } else {
    // Arrivals on a fixed schedule, checked every ~1 ms; a late tick issues every arrival that is due.
    const interval = 1000 / config.load.rate;
    const phase = (interval * config.index) / config.threads;
    const total = Math.floor((config.warmMs + config.measureMs) / interval);
    let k = 0;
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = absNow();
        while (k < total && startAt + phase + k * interval <= now) {
          pending.push(call(startAt + phase + k * interval));
          k++;
        }
        if (k < total) setTimeout(tick, 1);
        else resolve();
      };
      tick();
    });
  }
  // Drain: wait for what was started, up to a deadline (unfinished calls keep ends = NaN).
  const drainDeadline = stopAt + 60_000;
  await Promise.race([Promise.all(pending), sleepUntil(drainDeadline)]);
  clearTimeout(monitorOn);
  clearTimeout(monitorOff);
  monitor.disable();
  const loopDelay = {
    p50: monitor.percentile(50) / 1e6,
    p99: monitor.percentile(99) / 1e6,
    max: monitor.max / 1e6,
  };
  await Promise.race([client.close(), sleepUntil(absNow() + 5000)]);
  return {
    starts: Float64Array.from(starts),
    ends: Float64Array.from(ends),
    errors,
    firstError,
    loopDelay,
  };
}

// ---- worker entry -----------------------------------------------------------------------------------------

if (!isMainThread && (workerData as { bench?: string } | null)?.bench === 'llm-workers') {
  const config = (workerData as { config: ShareConfig }).config;
  const port = parentPort!;
  const run = await prepareShare(config);
  port.once('message', (msg: { startAt: number }) => {
    void run(msg.startAt).then((result) =>
      port.postMessage(result, [result.starts.buffer as ArrayBuffer, result.ends.buffer as ArrayBuffer]),
    );
  });
  port.postMessage('ready');
}

// ---- main thread: cells, sampling, tables ------------------------------------------------------------------

type Design = 'A' | 'B2' | 'B4' | 'B2s';

interface Cell {
  series: 'zero' | 'latency';
  design: Design;
  load: Load;
  heavyUs: number;
}

interface CellResult {
  cell: Cell;
  rep: number;
  offered: number | undefined;
  achieved: number;
  clientCpuMsPerCall: number;
  clientCores: number;
  simCpuMsPerCall: number;
  simCores: number;
  otherCores: number;
  p50: number;
  p99: number;
  unfinished: number;
  errors: number;
  /** The client's event loop: the main thread in A, the worst worker (by p99) in B. */
  clientLoop: LoopDelay;
  peakInFlight: number | undefined;
  /** Which measurement was kept (see --quiet). */
  attempts: number;
}

interface Sample {
  t: number;
  cpuMs: number;
  simTicks: number;
  machineBusy: number;
  machineTotal: number;
}

const CLK_TCK = 100;

function procTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14 and 15 of the whole line)
}

function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - v[3]! - v[4]!, total };
}

function sample(simPid: number): Sample {
  const cpu = process.cpuUsage();
  const m = machineTicks();
  return {
    t: absNow(),
    cpuMs: (cpu.user + cpu.system) / 1000,
    simTicks: procTicks(simPid),
    machineBusy: m.busy,
    machineTotal: m.total,
  };
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const WARM_MS = 1000;

async function runCell(cell: Cell, rep: number, url: string, simPid: number): Promise<CellResult> {
  const measureMs = cell.load.kind === 'closed' ? 3000 : 4000;
  const cap = CAP;
  const threads = cell.design === 'A' ? 1 : cell.design === 'B4' ? 4 : 2;
  const split = cell.design === 'B2s';
  const shareLoad = (index: number): Load =>
    cell.load.kind === 'closed'
      ? {
          kind: 'closed',
          callers: Math.floor(cell.load.callers / threads) + (index < cell.load.callers % threads ? 1 : 0),
        }
      : { kind: 'open', rate: cell.load.rate / threads };
  const buffer = SharedCap.buffer();
  const configs: ShareConfig[] = Array.from({ length: threads }, (_, index) => ({
    url,
    load: shareLoad(index),
    // A and the shared-counter B: the client's own admission does not bind beyond the cap; Bws: cap / W each.
    clientCap: cell.load.kind === 'closed' ? cell.load.callers : split ? Math.ceil(cap / threads) : cap,
    shared:
      cell.design === 'A' || split
        ? undefined
        : { buffer, cap: cell.load.kind === 'closed' ? cell.load.callers : cap },
    warmMs: WARM_MS,
    measureMs,
    heavyUs: cell.heavyUs,
    index,
    threads,
  }));

  let results: Promise<ShareResult[]>;
  let startAt: number;
  const workers: Worker[] = [];
  if (cell.design === 'A') {
    const run = await prepareShare(configs[0]!);
    startAt = absNow() + 200;
    results = Promise.all([run(startAt)]);
  } else {
    const ready: Promise<void>[] = [];
    const done: Promise<ShareResult>[] = [];
    for (const config of configs) {
      const worker = startWorker({ bench: 'llm-workers', config });
      workers.push(worker);
      ready.push(new Promise((resolve) => worker.once('message', () => resolve())));
      done.push(
        new Promise((resolve, reject) => {
          worker.once('error', reject);
          ready[ready.length - 1]!.then(() => worker.once('message', (r: ShareResult) => resolve(r)));
        }),
      );
    }
    await Promise.all(ready);
    startAt = absNow() + 300;
    for (const worker of workers) worker.postMessage({ startAt });
    results = Promise.all(done);
  }

  // Main-thread sampling of the measured window (the client loops' delay is measured inside runShare).
  const t1 = startAt + WARM_MS;
  const t2 = t1 + measureMs;
  let s1: Sample | undefined;
  let s2: Sample | undefined;
  await new Promise<void>((resolve) => {
    setTimeout(
      () => {
        s1 = sample(simPid);
        setTimeout(
          () => {
            s2 = sample(simPid);
            resolve();
          },
          Math.max(0, t2 - absNow()),
        );
      },
      Math.max(0, t1 - absNow()),
    );
  });
  const shares = await results;
  await Promise.all(workers.map((w) => w.terminate()));
  const a = s1!;
  const b = s2!;

  let completedInWindow = 0;
  let errors = 0;
  let unfinished = 0;
  const lat: number[] = [];
  for (const share of shares) {
    errors += share.errors;
    if (share.firstError !== undefined && errors > 0 && rep === 1)
      console.error(`  errors in ${label(cell)}: ${share.firstError}`);
    for (let i = 0; i < share.starts.length; i++) {
      const s = share.starts[i]!;
      const e = share.ends[i]!;
      if (e >= a.t && e <= b.t) completedInWindow++;
      if (s >= t1 && s < t2) {
        if (Number.isNaN(e)) unfinished++;
        else lat.push(e - s);
      }
    }
  }
  if (process.env.LW_DEBUG !== undefined) {
    for (const share of shares) {
      const buckets = new Map<number, number[]>();
      for (let i = 0; i < share.starts.length; i++) {
        const k = Math.floor((share.starts[i]! - startAt) / 250);
        buckets.set(k, [...(buckets.get(k) ?? []), share.ends[i]! - share.starts[i]!]);
      }
      console.error(
        [...buckets].map(([k, v]) => `${k * 250}:${v.length}/${Math.max(...v).toFixed(0)}`).join(' '),
      );
    }
  }
  const sorted = Float64Array.from(lat).sort();
  const windowS = (b.t - a.t) / 1000;
  const clientCpuMs = b.cpuMs - a.cpuMs;
  const simCpuMs = ((b.simTicks - a.simTicks) * 1000) / CLK_TCK;
  const cores = os.cpus().length;
  const machineBusyCores = ((b.machineBusy - a.machineBusy) / (b.machineTotal - a.machineTotal)) * cores;
  const clientCores = clientCpuMs / 1000 / windowS;
  const simCores = simCpuMs / 1000 / windowS;
  return {
    cell,
    rep,
    offered: cell.load.kind === 'open' ? cell.load.rate : undefined,
    achieved: completedInWindow / windowS,
    clientCpuMsPerCall: clientCpuMs / completedInWindow,
    clientCores,
    simCpuMsPerCall: simCpuMs / completedInWindow,
    simCores,
    otherCores: Math.max(0, machineBusyCores - clientCores - simCores),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    unfinished,
    errors,
    // For A the main thread is the client's loop: report the loop delay seen by runShare itself.
    clientLoop: shares.map((x) => x.loopDelay).reduce((p, q) => (q.p99 > p.p99 ? q : p)),
    attempts: 1,
    peakInFlight:
      cell.design === 'A' || split ? undefined : new SharedCap(buffer, 0).peak /* read-only view */,
  };
}

/**
 * A worker running this file. Under tsx the worker does not inherit tsx's loader (Node 20), so a small eval
 * entry loads this file through tsx's API; compiled to .js it starts directly.
 */
function startWorker(data: unknown): Worker {
  const self = import.meta.url;
  if (self.endsWith('.js')) return new Worker(new URL(self), { workerData: data });
  const api = import.meta.resolve('tsx/esm/api');
  const entry = `import(${JSON.stringify(api)}).then((m) => m.tsImport(${JSON.stringify(self)}, ${JSON.stringify(self)}))`;
  return new Worker(entry, { eval: true, execArgv: [], workerData: data });
}

function label(cell: Cell): string {
  const load = cell.load.kind === 'closed' ? `C=${cell.load.callers}` : `open ${cell.load.rate}/s`;
  const design = cell.design === 'B2s' ? 'B2 split' : cell.design;
  return `${cell.series} ${design} ${load}${cell.heavyUs > 0 ? ` +${cell.heavyUs}us` : ''}`;
}

const SIM_ARGS = {
  zero: ['--zero-latency', '--mean-reply-tokens', '30'],
  latency: ['--max-concurrency', '1024', '--decode-tps', '300', '--mean-reply-tokens', '30'],
} as const;

function cellsFor(series: 'zero' | 'latency', quick: boolean): Cell[] {
  const designs: Design[] = quick ? ['A', 'B2'] : ['A', 'B2', 'B4'];
  const callers = quick ? [256] : [64, 256, 1024];
  const rates = quick ? [2000] : [1000, 2000, 4000, 6000, 8000, 10_000];
  const cells: Cell[] = [];
  for (const c of callers)
    for (const design of designs)
      cells.push({ series, design, load: { kind: 'closed', callers: c }, heavyUs: 0 });
  for (const rate of rates)
    for (const design of designs) cells.push({ series, design, load: { kind: 'open', rate }, heavyUs: 0 });
  if (series === 'zero' && !quick) {
    cells.push({ series, design: 'B2s', load: { kind: 'closed', callers: 256 }, heavyUs: 0 });
    cells.push({ series, design: 'B2s', load: { kind: 'open', rate: 4000 }, heavyUs: 0 });
    for (const design of designs)
      cells.push({ series, design, load: { kind: 'closed', callers: 256 }, heavyUs: 500 });
  }
  return cells;
}

const median = (xs: number[]): number => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((p, q) => p - q);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const f = (x: number, digits = 0): string =>
  Number.isNaN(x)
    ? '-'
    : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function table(results: CellResult[]): string {
  const byCell = new Map<string, CellResult[]>();
  for (const r of results) {
    const key = label(r.cell);
    byCell.set(key, [...(byCell.get(key) ?? []), r]);
  }
  const lines = [
    '| cell | offered/s | achieved calls/s | ach/off | client CPU ms/call | client cores | sim CPU ms/call | sim cores | other load cores | p50 ms | p99 ms | client loop delay p50/p99/max ms | errors+unfinished |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |',
  ];
  for (const [key, rs] of byCell) {
    const m = (g: (r: CellResult) => number): number => median(rs.map(g));
    const offered = rs[0]!.offered;
    const row = [
      key,
      offered === undefined ? '-' : f(offered),
      f(m((r) => r.achieved)),
      offered === undefined
        ? '-'
        : f(
            m((r) => r.achieved / offered),
            2,
          ),
      f(
        m((r) => r.clientCpuMsPerCall),
        3,
      ),
      f(
        m((r) => r.clientCores),
        2,
      ),
      f(
        m((r) => r.simCpuMsPerCall),
        3,
      ),
      f(
        m((r) => r.simCores),
        2,
      ),
      f(
        m((r) => r.otherCores),
        2,
      ),
      f(
        m((r) => r.p50),
        1,
      ),
      f(
        m((r) => r.p99),
        1,
      ),
      [m((r) => r.clientLoop.p50), m((r) => r.clientLoop.p99), m((r) => r.clientLoop.max)]
        .map((x) => f(x, 1))
        .join(' / '),
      f(m((r) => r.errors + r.unfinished)),
    ];
    lines.push(`| ${row.join(' | ')} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const quick = argv.includes('--quick');
  const reps = Number(arg('--reps') ?? (quick ? 1 : 3));
  const quiet = Number(arg('--quiet') ?? 0.25);
  const attempts = Number(arg('--attempts') ?? 4);
  const series = (arg('--series') ?? 'zero,latency').split(',') as Array<'zero' | 'latency'>;
  console.log(
    `machine: ${os.cpus()[0]?.model} · ${os.cpus().length} cores · ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB · node ${process.version} · load avg ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  for (const s of series) {
    const sim = await startSimProcess([...SIM_ARGS[s]]);
    console.log(`\n## series ${s}: air sim ${SIM_ARGS[s].join(' ')}\n${sim.banner}\n`);
    const results: CellResult[] = [];
    const only = arg('--cells'); // run only the cells whose label contains this text
    const cells = cellsFor(s, quick).filter((c) => only === undefined || label(c).includes(only));
    // Repetitions interleaved (rep 1 of every cell, then rep 2, ...) so slow phases of the shared machine
    // spread over all cells instead of hitting one.
    for (let rep = 1; rep <= reps; rep++) {
      for (const cell of cells) {
        // The machine is shared: a measurement taken while other work used more than `quiet` cores is
        // repeated (up to `attempts` times), keeping the one with the least other load.
        let r: CellResult | undefined;
        for (let attempt = 1; attempt <= attempts; attempt++) {
          const next = await runCell(cell, rep, sim.url, sim.child.pid!);
          next.attempts = attempt;
          if (r === undefined || next.otherCores < r.otherCores) r = next;
          if (next.otherCores <= quiet) break;
        }
        const kept = r!;
        results.push(kept);
        console.log(
          `rep ${rep} ${label(cell)} (attempt ${kept.attempts}): ${f(kept.achieved)} calls/s · client ${f(kept.clientCpuMsPerCall, 3)} ms/call (${f(kept.clientCores, 2)} cores) · sim ${f(kept.simCpuMsPerCall, 3)} ms/call (${f(kept.simCores, 2)} cores) · other ${f(kept.otherCores, 2)} cores · p50 ${f(kept.p50, 1)} p99 ${f(kept.p99, 1)} ms · loop p99 ${f(kept.clientLoop.p99, 1)} ms · errors ${kept.errors} unfinished ${kept.unfinished}${kept.peakInFlight === undefined ? '' : ` · peak in flight ${kept.peakInFlight}`}`,
        );
      }
    }
    console.log(`\n### medians of ${reps} (series ${s})\n\n${table(results)}\n`);
    const json = arg('--json');
    if (json !== undefined) appendFileSync(json, results.map((r) => JSON.stringify(r)).join('\n') + '\n');
    console.log(await stopSimProcess(sim.child));
  }
}

if (isMainThread) await main();
