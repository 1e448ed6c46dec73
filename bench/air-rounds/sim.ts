/**
 * The simulator each side of the benchmark runs against: a fresh process per side, same options, so neither
 * side benefits from the other and the client's CPU is not the simulator's.
 */
import { spawn } from 'node:child_process';
import type { SimulatorOptions, SimulatorStats } from '../../llm/simulator/index.js';
import type { MetricName } from '../../llm/simulator/metrics.js';
import { parsePrefixMetrics, type PrefixMetrics } from '../../llm/simulator/prefix-cache.js';
import { siblingModule, workerEntry } from '../../pipeline/pool/worker-file.js';
import { scrapeSimMetrics, stopSimProcess, type SimProcess } from '../sim-process.js';

export type SimMetrics = Record<MetricName, number>;

/** Starts the simulator in its own process and resolves once it prints its URL. */
export async function startBenchSim(options: SimulatorOptions): Promise<SimProcess> {
  const entry = workerEntry(siblingModule(import.meta.url, 'sim-server'));
  const child = spawn(process.execPath, [...entry.execArgv, entry.filename, JSON.stringify(options)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let said = '';
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      said += d.toString();
      const match = /http:\/\/[\d.]+:\d+\/v1/.exec(said);
      if (match !== null) {
        child.stdout!.off('data', onData);
        child.stderr!.off('data', onData);
        resolve(match[0]);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`simulator exited with ${code}: ${said}`)));
  });
  return { child, origin: url.slice(0, -'/v1'.length), url, banner: said.trim() };
}

/** Stops the simulator; its own counters (the JSON line it prints on SIGTERM). */
export async function stopBenchSim(sim: SimProcess): Promise<SimulatorStats> {
  const said = await stopSimProcess(sim.child);
  const line = said.split('\n').find((l) => l.startsWith('{'));
  if (line === undefined) throw new Error(`the simulator printed no counters: ${said}`);
  return JSON.parse(line) as SimulatorStats;
}

export const scrape = scrapeSimMetrics;

/** The simulator's GPU work so far: prompt tokens looked up, found in the prefix cache, prefilled; decoded. */
export async function scrapeGpuWork(origin: string): Promise<PrefixMetrics> {
  const response = await fetch(`${origin}/metrics`);
  if (!response.ok) throw new Error(`GET ${origin}/metrics answered ${response.status}`);
  return parsePrefixMetrics(await response.text());
}

export function gpuWorkBetween(a: PrefixMetrics, b: PrefixMetrics): PrefixMetrics {
  return {
    queries: b.queries - a.queries,
    hits: b.hits - a.hits,
    prefillTokens: b.prefillTokens - a.prefillTokens,
    decodeTokens: b.decodeTokens - a.decodeTokens,
  };
}

/** Server-side figures between two scrapes: slot occupancy from the exact time integrals. */
export interface ServerWindow {
  readonly seconds: number;
  /** Slot-time held / (slots × time): the fraction of the server's capacity in use. */
  readonly busy: number;
  readonly meanRunning: number;
  readonly meanWaiting: number;
  readonly completions: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
}

export function serverWindow(a: SimMetrics, b: SimMetrics, slots: number): ServerWindow {
  const d = (name: MetricName): number => b[name] - a[name];
  const seconds = d('uptime_seconds');
  const mean = (name: MetricName): number => (seconds > 0 ? d(name) / seconds : 0);
  return {
    seconds,
    busy: mean('sequence_seconds_total') / slots,
    meanRunning: mean('sequence_seconds_total'),
    meanWaiting: mean('waiting_seconds_total'),
    completions: d('completions_total'),
    promptTokens: d('prompt_tokens_total'),
    completionTokens: d('completion_tokens_total'),
  };
}
