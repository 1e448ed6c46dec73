/**
 * Shared by the LLM benchmarks: `air sim` in its own process (so the CPU a benchmark measures is the client's
 * alone) and the client configuration they drive it with.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { Accounting } from '../llm/accounting.js';
import { HttpLlmClient } from '../llm/client.js';
import { endpointSchema, resolveEndpoint } from '../llm/endpoint.js';
import { parseMetrics, type MetricName } from '../llm/simulator/metrics.js';

/** The built CLI (`npm run build`); AIR_CLI points at another build, e.g. one made with `tsc --outDir`. */
const AIR = process.env.AIR_CLI ?? path.resolve(import.meta.dirname, '../dist/cli/air.js');

export interface SimProcess {
  readonly child: ChildProcess;
  /** `http://127.0.0.1:<port>`: `/metrics` lives here. */
  readonly origin: string;
  /** The OpenAI base URL, `<origin>/v1`. */
  readonly url: string;
  /** The start-up line: URL, models and stated ceiling. */
  readonly banner: string;
}

/** Starts `air sim` (port 0 picks a free one) and resolves once it prints its URL. */
export async function startSimProcess(args: readonly string[], port = 0): Promise<SimProcess> {
  const child = spawn(process.execPath, [AIR, 'sim', '--port', String(port), '--model', 'bench', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let banner = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      banner += d.toString();
      if (/http:\/\/[\d.]+:\d+/.test(banner)) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`air sim exited with ${code}: ${banner}`)));
  });
  const origin = /http:\/\/[\d.]+:\d+/.exec(banner)![0];
  return { child, origin, url: `${origin}/v1`, banner: banner.trim() };
}

/** One scrape of the simulator's `/metrics` (its scheduler gauges, their time integrals and its clock). */
export async function scrapeSimMetrics(origin: string): Promise<Record<MetricName, number>> {
  const response = await fetch(`${origin}/metrics`);
  if (!response.ok) throw new Error(`GET ${origin}/metrics answered ${response.status}`);
  return parseMetrics(await response.text());
}

/** Stops the simulator and returns what it printed on the way out (its own counters). */
export function stopSimProcess(child: ChildProcess): Promise<string> {
  let said = '';
  child.stdout?.on('data', (d: Buffer) => (said += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (said += d.toString()));
  return new Promise((resolve) => {
    child.on('exit', () => resolve(said.trim()));
    child.kill('SIGTERM');
  });
}

/** air's client for one `guidance` role on the benchmark simulator (one or several replicas), with its accounting. */
export function benchClient(
  url: string | readonly string[],
  options: {
    maxConcurrency: number;
    initialConcurrency?: number;
    maxTokens: number;
    /** air's saturation signal (default auto: the simulator's gauges); off leaves 429/503 alone. */
    saturation?: 'auto' | 'gauges' | 'latency' | 'off';
    /** Processes sharing these servers (llm.processes): each takes its share of a queueing one. */
    sharers?: number;
  },
): { client: HttpLlmClient; accounting: Accounting } {
  const accounting = new Accounting();
  const client = new HttpLlmClient({
    endpoints: [
      resolveEndpoint(
        'guidance',
        endpointSchema.parse({
          endpoints: (typeof url === 'string' ? [url] : url).map((baseUrl) => ({ baseUrl })),
          model: 'bench',
          maxConcurrency: options.maxConcurrency,
          initialConcurrency: options.initialConcurrency ?? options.maxConcurrency,
          maxAttempts: 20,
          saturation: options.saturation,
          sampling: { max_tokens: options.maxTokens, temperature: 0.2 },
        }),
      ),
    ],
    recorder: accounting,
    replicas: options.sharers === undefined ? undefined : { sharers: options.sharers },
  });
  return { client, accounting };
}
