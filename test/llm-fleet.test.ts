import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Accounting } from '../llm/accounting.js';
import { HttpLlmClient } from '../llm/client.js';
import { endpointSchema, replicasOf, resolveEndpoint, type EndpointConfig } from '../llm/endpoint.js';
import { LlmError } from '../llm/errors.js';
import { Admission } from '../llm/admission.js';
import { metricsUrl, parsePrometheusText, schedulerGauges } from '../llm/prometheus.js';
import { SaturationSignal } from '../llm/saturation.js';
import {
  parseMetrics,
  startSimulator,
  type Simulator,
  type SimulatorOptions,
} from '../llm/simulator/index.js';
import { runAir } from './helpers/cli.js';
import { SAMPLE, tempDir } from './helpers/duckdb.js';

/** Closed in reverse order: a client before the servers it was given. */
const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

async function sim(options: SimulatorOptions = {}): Promise<Simulator> {
  const simulator = await startSimulator({ seed: 1, ...options });
  open.push(simulator);
  return simulator;
}

const PROMPT = [{ role: 'user', content: 'Say something about queues.' }];

async function chatStatus(simulator: Simulator, model = 'air-sim'): Promise<number> {
  const response = await fetch(`${simulator.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: PROMPT }),
  });
  await response.text();
  return response.status;
}

async function gauges(simulator: Simulator) {
  const response = await fetch(metricsUrl(simulator.url));
  return schedulerGauges(await response.text());
}

describe('the simulator as a queueing server (vLLM-like)', () => {
  it('queues requests beyond its slots instead of refusing, and reports vLLM gauges', async () => {
    const simulator = await sim({
      models: ['guidance'],
      maxConcurrentSequences: 2,
      maxQueue: 100_000,
      replyLength: 'fixed',
      meanReplyTokens: 20,
      decodeTokensPerSPerSequence: 40, // 0.5 s a call: none ends between the wait below and the scrape
    });
    const statuses = Array.from({ length: 10 }, () => chatStatus(simulator, 'guidance'));
    while (simulator.stats().inService + simulator.stats().queued < 10) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(await gauges(simulator)).toEqual({ server: 'vllm', running: 2, waiting: 8 });
    const text = await (await fetch(metricsUrl(simulator.url))).text();
    expect(text).toContain('# TYPE vllm:num_requests_waiting gauge');
    expect(text).toContain('vllm:num_requests_running{model_name="guidance"} 2');
    expect(await Promise.all(statuses)).toEqual(Array.from({ length: 10 }, () => 200));
    expect(simulator.stats()).toMatchObject({ queueFull: 0, maxQueue: 8, maxConcurrent: 2 });
    expect(await gauges(simulator)).toEqual({ server: 'vllm', running: 0, waiting: 0 });
  });
});

describe('reading scheduler gauges from Prometheus text', () => {
  it("sums a metric's series over its labels and skips comments and timestamps", () => {
    const text = [
      '# HELP vllm:num_requests_running Number of requests in model execution batches.',
      '# TYPE vllm:num_requests_running gauge',
      'vllm:num_requests_running{engine="0",model_name="a"} 12.0',
      'vllm:num_requests_running{engine="1",model_name="a {b}"} 4',
      'vllm:num_requests_waiting{model_name="a\\"q"} 3 1712345678000',
      'vllm:gpu_cache_usage_perc 0.5',
      '',
    ].join('\n');
    expect(parsePrometheusText(text).get('vllm:num_requests_running')).toBe(16);
    expect(schedulerGauges(text)).toEqual({ server: 'vllm', running: 16, waiting: 3 });
  });

  it("finds SGLang's and TGI's names", () => {
    expect(schedulerGauges('sglang:num_running_reqs{tp_rank="0"} 7\nsglang:num_queue_reqs 0\n')).toEqual({
      server: 'sglang',
      running: 7,
      waiting: 0,
    });
    expect(schedulerGauges('tgi_batch_current_size 3\ntgi_queue_size 9\n')).toEqual({
      server: 'tgi',
      running: 3,
      waiting: 9,
    });
  });

  it('says "no gauges" for a missing, partial or malformed exposition', () => {
    expect(schedulerGauges('')).toBeUndefined();
    expect(schedulerGauges('<html>404 Not Found</html>')).toBeUndefined();
    expect(schedulerGauges('{"detail":"Not Found"}')).toBeUndefined();
    expect(schedulerGauges('vllm:num_requests_running 3\n')).toBeUndefined();
    expect(schedulerGauges('vllm:num_requests_running 3\nvllm:num_requests_waiting NaN\n')).toBeUndefined();
    expect(schedulerGauges('vllm:num_requests_running three\nvllm:num_requests_waiting 1\n')).toBeUndefined();
    expect(schedulerGauges('vllm:num_requests_running -1\nvllm:num_requests_waiting 1\n')).toBeUndefined();
  });

  it('looks for /metrics at the root of the server, beside /v1', () => {
    expect(metricsUrl('http://127.0.0.1:8000/v1')).toBe('http://127.0.0.1:8000/metrics');
    expect(metricsUrl('http://gpu-3:8000/v1/?x=1')).toBe('http://gpu-3:8000/metrics');
  });
});

/** A queueing server (vLLM-like) of `slots` sequences; replies of 10 tokens at 500 tok/s: 20 ms a call. */
function queueing(slots: number, port = 0): SimulatorOptions {
  return {
    port,
    models: ['m'],
    maxConcurrentSequences: slots,
    maxQueue: 100_000,
    replyLength: 'fixed',
    meanReplyTokens: 10,
    decodeTokensPerSPerSequence: 500,
    prefillTokensPerS: 1e9,
    seed: 3,
  };
}

/** A client whose guidance role spreads over `replicas`, each held to its own fixed limit. */
function fleetClient(
  replicas: ReadonlyArray<{ url: string; maxConcurrency: number; weight?: number }>,
  endpoint: Partial<EndpointConfig> = {},
  fetchMetrics?: (url: string) => Promise<string | undefined>,
): { client: HttpLlmClient; accounting: Accounting } {
  const accounting = new Accounting();
  const config = endpointSchema.parse({
    model: 'm',
    endpoints: replicas.map((r) => ({ baseUrl: r.url, maxConcurrency: r.maxConcurrency, weight: r.weight })),
    initialConcurrency: 64,
    maxAttempts: 20,
    saturation: 'off',
    ...endpoint,
  });
  const client = new HttpLlmClient({
    endpoints: [resolveEndpoint('guidance', config)],
    recorder: accounting,
    backoff: { baseMs: 5, maxMs: 40 },
    replicas: { ejectBaseMs: 50, ejectMaxMs: 200, fetchMetrics },
  });
  open.push(client);
  return { client, accounting };
}

const ask = (i: number) => [{ role: 'user' as const, content: `Write instruction number ${i} about bread.` }];

/** `total` calls through `callers` concurrent callers; `after(i)` runs once call i has been answered. */
async function drive(
  client: HttpLlmClient,
  total: number,
  callers: number,
  after: (answered: number) => Promise<void> | void = () => {},
): Promise<number> {
  let next = 0;
  let answered = 0;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (next < total) {
        const i = next++;
        await client.chat('guidance', ask(i), { seed: i });
        answered++;
        await after(answered);
      }
    }),
  );
  return answered;
}

describe('replicas of one role', () => {
  it('reads a role as its endpoints list, or as its one baseUrl', () => {
    const single = resolveEndpoint('guidance', endpointSchema.parse({ model: 'm', maxConcurrency: 32 }));
    expect(replicasOf(single)).toMatchObject([{ baseUrl: 'http://127.0.0.1:8000/v1', weight: 1 }]);
    const fleet = resolveEndpoint(
      'guidance',
      endpointSchema.parse({
        model: 'm',
        maxConcurrency: 32,
        initialConcurrency: 24,
        endpoints: [
          { baseUrl: 'http://10.0.0.1:8000/v1' },
          { baseUrl: 'http://10.0.0.2:8000/v1', maxConcurrency: 16, weight: 2 },
        ],
      }),
    );
    expect(replicasOf(fleet)).toMatchObject([
      { baseUrl: 'http://10.0.0.1:8000/v1', maxConcurrency: 32, initialConcurrency: 24, weight: 1 },
      { baseUrl: 'http://10.0.0.2:8000/v1', maxConcurrency: 16, initialConcurrency: 16, weight: 2 },
    ]);
    expect(() => endpointSchema.parse({ model: 'm', endpoints: [] })).toThrow();
    expect(() => endpointSchema.parse({ model: 'm', endpoints: [{ baseUrl: 'not a url' }] })).toThrow();
  });

  it('sends each call to the replica with the most free capacity: calls split as the limits (4 and 2)', async () => {
    const big = await sim(queueing(4));
    const small = await sim(queueing(2));
    const { client, accounting } = fleetClient([
      { url: big.url, maxConcurrency: 4 },
      { url: small.url, maxConcurrency: 2 },
    ]);
    expect(await drive(client, 300, 12)).toBe(300);
    const share = big.stats().completions / 300;
    expect(share).toBeGreaterThan(0.6);
    expect(share).toBeLessThan(0.73);
    // Neither server ever queued: air held each to its own limit.
    expect(big.stats()).toMatchObject({ maxConcurrent: 4, maxQueue: 0, queueFull: 0 });
    expect(small.stats()).toMatchObject({ maxConcurrent: 2, maxQueue: 0, queueFull: 0 });
    const { replicas } = accounting.snapshot().entries[0]!;
    expect(replicas).toEqual({
      [big.url]: { attempts: big.stats().completions, answered: big.stats().completions, errors: {} },
      [small.url]: { attempts: small.stats().completions, answered: small.stats().completions, errors: {} },
    });
  });

  it("weights scale a replica's share at equal limits", async () => {
    const a = await sim(queueing(4));
    const b = await sim(queueing(4));
    const { client } = fleetClient([
      { url: a.url, maxConcurrency: 4, weight: 3 },
      { url: b.url, maxConcurrency: 4, weight: 1 },
    ]);
    // 4 callers never fill both: each call goes where (in flight + 1) / (limit × weight) is lowest.
    await drive(client, 200, 4);
    expect(a.stats().completions).toBeGreaterThan(3 * b.stats().completions * 0.8);
  });

  it('takes a stopped replica out, retries its calls on the other, and uses it again once it is back', async () => {
    const a = await sim(queueing(4));
    const b = await sim(queueing(4));
    const { client, accounting } = fleetClient([
      { url: a.url, maxConcurrency: 4 },
      { url: b.url, maxConcurrency: 4 },
    ]);
    let restarted: Simulator | undefined;
    let answeredByAOnStop = 0;
    const answered = await drive(client, 400, 8, async (n) => {
      if (n === 100) {
        answeredByAOnStop = a.stats().completions;
        await a.close(); // in-flight calls on A lose their connection; new ones are refused
      }
      if (n === 250) restarted = await sim({ ...queueing(4), port: a.port }); // A is back, same address
    });
    expect(answered).toBe(400); // nothing lost
    expect(answeredByAOnStop).toBeGreaterThan(20);
    expect(restarted!.stats().completions).toBeGreaterThan(20); // used again once back
    const [stateA, stateB] = client.replicaStates('guidance');
    expect(stateA).toMatchObject({ baseUrl: a.url, health: 'up' });
    expect(stateA!.ejections).toBeGreaterThanOrEqual(1);
    expect(stateA!.returns).toBe(stateA!.ejections);
    expect(stateB!.ejections).toBe(0);
    const entry = accounting.snapshot().entries[0]!;
    expect(entry.calls).toBe(400);
    expect(entry.replicas![a.url]!.errors.AIR_LLM_CONNECTION).toBeGreaterThan(0);
    // Every call answered once: by A before the stop, by B, or by A after its return.
    expect(a.stats().completions + b.stats().completions + restarted!.stats().completions).toBe(400);
  });

  it('stops the run only when every replica stays down, naming them all', async () => {
    const a = await sim(queueing(2));
    const b = await sim(queueing(2));
    const { client } = fleetClient(
      [
        { url: a.url, maxConcurrency: 2 },
        { url: b.url, maxConcurrency: 2 },
      ],
      { circuitBreakerSeconds: 0.5, maxAttempts: 1000 },
    );
    await drive(client, 10, 2);
    await a.close();
    // One replica down: calls go on, on the other.
    expect(await drive(client, 20, 4)).toBe(20);
    await b.close();
    const error = await client.chat('guidance', ask(99)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(LlmError);
    expect((error as LlmError).code).toBe('AIR_LLM_CIRCUIT_OPEN');
    expect((error as LlmError).fatal).toBe(true);
    expect((error as LlmError).message).toContain(`every replica of guidance (m at ${a.url}, ${b.url})`);
  });
});

describe('accounting per replica', () => {
  it('adds up by base URL when snapshots merge, as everything else in accounting', () => {
    const whole = new Accounting();
    const halves = [new Accounting(), new Accounting()];
    const attempts: Array<[string, string | undefined]> = [
      ['http://a/v1', undefined],
      ['http://b/v1', 'AIR_LLM_CONNECTION'],
      ['http://a/v1', 'AIR_LLM_SERVER_ERROR'],
      ['http://b/v1', undefined],
      ['http://c/v1', undefined],
    ];
    attempts.forEach(([url, code], i) => {
      whole.recordAttempt('guidance', 'm', url, code);
      halves[i % 2]!.recordAttempt('guidance', 'm', url, code);
    });
    const merged = Accounting.merge(halves[0]!.snapshot(), halves[1]!.snapshot());
    expect(merged).toEqual(whole.snapshot());
    expect(merged.entries[0]!.replicas).toEqual({
      'http://a/v1': { attempts: 2, answered: 1, errors: { AIR_LLM_SERVER_ERROR: 1 } },
      'http://b/v1': { attempts: 2, answered: 1, errors: { AIR_LLM_CONNECTION: 1 } },
      'http://c/v1': { attempts: 1, answered: 1, errors: {} },
    });
  });
});

describe('air run on a fleet', () => {
  it('--guidance-url a,b spreads the role over both servers; the ledger counts calls per replica', async () => {
    const fast = { models: ['g', 's'], maxConcurrentSequences: 8, decodeTokensPerSPerSequence: 5000 };
    const a = await sim({ ...fast, prefillTokensPerS: 1e9 });
    const b = await sim({ ...fast, prefillTokensPerS: 1e9 });
    const { dir, cleanup } = await tempDir('air-fleet-');
    open.push({ close: cleanup });
    const out = path.join(dir, 'out');
    const run = await runAir([
      'run',
      '-i',
      SAMPLE,
      '-o',
      out,
      '--limit',
      '20',
      '--progress',
      'off',
      '--guidance-url',
      `${a.url},${b.url}`,
      '--guidance-model',
      'g',
      '--student-url',
      a.url,
      '--student-model',
      's',
    ]);
    expect(run.code, run.stderr).toBe(0);
    const ledger = JSON.parse(await readFile(path.join(out, 'ledger.json'), 'utf8')) as {
      llm: {
        accounting: { entries: Array<{ role: string; calls: number; replicas: Record<string, unknown> }> };
      };
    };
    const { entries } = ledger.llm.accounting;
    const guidance = entries.find((e) => e.role === 'guidance')!;
    expect(Object.keys(guidance.replicas)).toEqual([a.url, b.url].sort());
    // A role on one server has no per-replica tallies: they would repeat the role's own.
    for (const student of entries.filter((e) => e.role === 'student'))
      expect(student.replicas).toBeUndefined();
    expect(b.stats().completions).toBeGreaterThan(0);
    const calls = entries.reduce((n, e) => n + e.calls, 0);
    expect(a.stats().completions + b.stats().completions).toBe(calls);
    const report = await readFile(path.join(out, 'report.html'), 'utf8');
    expect(report).toContain('<h3>Per replica</h3>');
    for (const url of [a.url, b.url]) expect(report).toContain(`<th>guidance</th><td>${url}</td>`);
  });
});

/** The server's own integrals: request-seconds queued and slot-seconds served, between two scrapes. */
async function integrals(simulator: Simulator): Promise<{ waiting: number; serving: number }> {
  const m = parseMetrics(await (await fetch(metricsUrl(simulator.url))).text());
  return { waiting: m.waiting_seconds_total, serving: m.sequence_seconds_total };
}

/**
 * One client, 24 callers and a limit starting at 24, on a queueing server of 4 slots: the queue wait per unit of
 * service over the second half of 600 calls, with the saturation signal given.
 */
async function queueOnOneServer(
  saturation: EndpointConfig['saturation'],
  fetchMetrics?: (url: string) => Promise<string | undefined>,
) {
  const server = await sim(queueing(4));
  const { client } = fleetClient(
    [{ url: server.url, maxConcurrency: 64 }],
    { saturation, initialConcurrency: 24, metricsIntervalMs: 50 },
    fetchMetrics,
  );
  let half: { waiting: number; serving: number } | undefined;
  await drive(client, 600, 24, async (n) => {
    if (n === 300) half = await integrals(server);
  });
  const end = await integrals(server);
  const [state] = client.replicaStates('guidance');
  return { waitPerService: (end.waiting - half!.waiting) / (end.serving - half!.serving), state: state! };
}

describe('the saturation signal on a server that queues instead of refusing', () => {
  it("without it, air's limit never comes down: calls wait several service times in the queue", async () => {
    const { waitPerService, state } = await queueOnOneServer('off');
    expect(state.limit).toBeGreaterThanOrEqual(24);
    expect(waitPerService).toBeGreaterThan(3); // 20 of 24 waiting behind 4 slots: ~5 service times
  });

  it("reads vLLM's gauges on /metrics and shrinks the limit toward what the server runs", async () => {
    const { waitPerService, state } = await queueOnOneServer('auto');
    expect(state.saturation.source).toBe('gauges');
    expect(state.saturation.cuts).toBeGreaterThan(0);
    expect(state.limit).toBeLessThanOrEqual(8);
    expect(waitPerService).toBeLessThan(1);
  });

  it('falls back to latency against the no-load minimum when /metrics is missing or malformed', async () => {
    for (const fetchMetrics of [
      async () => undefined, // no route, or not reachable
      async () => '<html><body>404 Not Found</body></html>',
      async () => 'vllm:num_requests_running 4\nvllm:num_requests_waiting NaN\n',
    ]) {
      const { waitPerService, state } = await queueOnOneServer('auto', fetchMetrics);
      expect(state.saturation.source).toBe('latency');
      expect(state.saturation.cuts).toBeGreaterThan(0);
      expect(state.limit).toBeLessThanOrEqual(8);
      expect(waitPerService).toBeLessThan(1);
      while (open.length > 0) await open.pop()!.close();
    }
  });
});

describe('the gauge rule', () => {
  /** An admission with `active` calls in flight, and a signal on it reading `text` as the server's /metrics. */
  function signal(active: number, sharers: number, text: () => string) {
    const admission = new Admission({ maxConcurrency: 64, initialConcurrency: 32 });
    for (let i = 0; i < active; i++) admission.tryAcquire();
    const saturation = new SaturationSignal('http://127.0.0.1:9/v1', admission, {
      mode: 'gauges',
      intervalMs: 60_000,
      sharers,
      random: () => 0,
      fetchText: async () => text(),
    });
    open.push({ close: async () => saturation.stop() });
    return { admission, saturation };
  }
  const gauges = (running: number, waiting: number) =>
    `vllm:num_requests_running ${running}\nvllm:num_requests_waiting ${waiting}\n`;

  it('cuts by the share the server runs, leaving a tenth of it waiting, once per queue', async () => {
    const { admission, saturation } = signal(20, 1, () => gauges(32, 48));
    await saturation.scrape();
    // 20 x (32 + 4) / (32 + 48) = 9
    expect(admission.limit).toBe(9);
    await saturation.scrape(); // the same queue, before the cut has drained it: no second cut
    expect(admission.limit).toBe(9);
    expect(saturation.state()).toMatchObject({ source: 'gauges', cuts: 1 });
  });

  it('leaves the limit alone while no more than a tenth of what runs waits', async () => {
    const { admission, saturation } = signal(20, 1, () => gauges(32, 4));
    await saturation.scrape();
    expect(admission.limit).toBe(32);
  });

  it('with the world size known, cuts a process above its equal share to it, the others by the factor', async () => {
    const big = signal(30, 4, () => gauges(32, 8)); // factor 36/40: 27; its share (32 + 4) / 4 = 9
    const small = signal(6, 4, () => gauges(32, 8)); // 6 x 0.9 = 5.4
    await big.saturation.scrape();
    await small.saturation.scrape();
    expect(big.admission.limit).toBe(9);
    expect(small.admission.limit).toBe(5);
  });
});
