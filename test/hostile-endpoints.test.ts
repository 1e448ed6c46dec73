import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig, type RunConfigInput } from '../job/config.js';
import { runJob } from '../job/run-job.js';
import {
  FAULT_KINDS,
  startSimulator,
  type Simulator,
  type SimulatorOptions,
} from '../llm/simulator/index.js';
import { sumValues } from '../pipeline/stats.js';
import { SAMPLE, query, tempDir } from './helpers/duckdb.js';

// The whole AIR run against a simulator that misbehaves: nothing may be lost, the ledger must balance, and a
// run whose endpoint stays down must stop cleanly with its state saved, then resume.

let dir: string;
let cleanup: () => Promise<void>;
const sims: Simulator[] = [];
beforeAll(async () => ({ dir, cleanup } = await tempDir('air-endpoints-')));
afterAll(async () => {
  for (const sim of sims) await sim.close();
  await cleanup();
});

async function simulator(options: SimulatorOptions): Promise<Simulator> {
  const sim = await startSimulator({
    models: ['g', 's'],
    decodeTokensPerSPerSequence: 4000,
    meanReplyTokens: 80,
    ...options,
  });
  sims.push(sim);
  return sim;
}

function config(
  sim: Simulator,
  output: string,
  endpoint: Record<string, unknown> = {},
  extra: Partial<RunConfigInput> = {},
) {
  return parseRunConfig({
    input: SAMPLE,
    output,
    llm: {
      guidance: { baseUrl: sim.url, model: 'g', timeoutSeconds: 2, ...endpoint },
      student: { baseUrl: sim.url, model: 's', timeoutSeconds: 2, ...endpoint },
    },
    air: { documentsInFlight: 24 },
    progress: 'off',
    ...extra,
  });
}

function balanced(totals: {
  read: number;
  written: number;
  dropped: Record<string, number>;
  failed: Record<string, number>;
}): boolean {
  return totals.written + sumValues(totals.dropped) + sumValues(totals.failed) === totals.read;
}

describe('hostile endpoints', () => {
  it('429 storms, 5xx, resets, stalls, malformed JSON and cut replies: retried, the ledger balances, failures are rows', async () => {
    const sim = await simulator({
      rate429: 0.1,
      retryAfterS: 0,
      rate500: 0.05,
      rate503: 0.05,
      rateReset: 0.03,
      rateStall: 0.01,
      stallMs: 3000,
      rateMalformed: 0.03,
      rateTruncated: 0.03,
    });
    const out = path.join(dir, 'faults');
    const result = await runJob(config(sim, out, {}, { source: { limit: 150 } }));
    expect(result.report.status, result.report.error).toBe('completed');
    const t = result.report.totals;
    expect(t.read).toBe(150);
    expect(balanced(t)).toBe(true);
    expect(t.written).toBeGreaterThan(0);
    const faults = sim.stats().faults;
    for (const kind of FAULT_KINDS) {
      expect(faults[kind], kind).toBeGreaterThan(0);
    }
    const retries = result.llm!.accounting.totals.retries;
    expect(retries).toBeGreaterThan(0);
    const failed = sumValues(t.failed);
    if (failed > 0) {
      const rows = await query(`select count(*) from read_parquet('${out}/failed/*.parquet')`);
      expect(Number(rows[0]![0])).toBeGreaterThanOrEqual(failed);
    }
    expect(Number((await query(`select count(*) from read_parquet('${out}/part-*.parquet')`))[0]![0])).toBe(
      t.rowsWritten,
    );
  }, 300_000);

  it('an endpoint that dies mid-run and comes back: the run waits it out and loses nothing', async () => {
    const sim = await simulator({});
    const out = path.join(dir, 'outage');
    const job = runJob(config(sim, out, { circuitBreakerSeconds: 30 }));
    setTimeout(() => sim.setDown(true), 1500);
    setTimeout(() => sim.setDown(false), 4500);
    const result = await job;
    expect(result.report.status, result.report.error).toBe('completed');
    expect(balanced(result.report.totals)).toBe(true);
    expect(sim.stats().byStatus['503']).toBeGreaterThan(0);
    expect(sumValues(result.report.totals.failed)).toBe(0);
  }, 300_000);

  it('an endpoint that stays down trips the circuit breaker: the run stops naming it, and resumes later', async () => {
    const sim = await simulator({});
    const out = path.join(dir, 'dead');
    const dead = config(sim, out, { circuitBreakerSeconds: 2 });
    const job = runJob(dead);
    setTimeout(() => sim.setDown(true), 1500);
    const result = await job;
    expect(result.report.status).toBe('failed');
    expect(result.report.errorCode).toBe('AIR_LLM_CIRCUIT_OPEN');
    expect(result.report.error).toMatch(/guidance \(g at http:\/\/127\.0\.0\.1:\d+\/v1\)|student \(s at/);
    const ledger = JSON.parse(await readFile(path.join(out, 'ledger.json'), 'utf8')) as { status: string };
    expect(ledger.status).toBe('failed');
    sim.setDown(false);
    const resumed = await runJob(config(sim, out, { circuitBreakerSeconds: 2 }));
    expect(resumed.report.status, resumed.report.error).toBe('completed');
    expect(resumed.report.totals.read).toBe(300);
    expect(balanced(resumed.report.totals)).toBe(true);
    const dups = await query(
      `select document_id, depth, count(*) c from read_parquet('${out}/part-*.parquet') group by all having c > 1`,
    );
    expect(dups).toEqual([]);
  }, 300_000);
});
