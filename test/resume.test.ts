import { copyFile, mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig, type RunConfigInput } from '../job/config.js';
import { runJob } from '../job/run-job.js';
import { MANIFEST_FILE, readManifest } from '../pipeline/io/manifest.js';
import { SAMPLE, query, tempDir } from './helpers/duckdb.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await tempDir('air-resume-')));
afterAll(() => cleanup());

const config = (output: string, extra: Partial<RunConfigInput> = {}) =>
  parseRunConfig({ input: SAMPLE, output, llm: { mode: 'sim' }, progress: 'off', ...extra });

describe('resuming an output folder', () => {
  it('a completed run is not redone: the same command reports it and exits cleanly', async () => {
    const out = path.join(dir, 'done');
    const first = await runJob(config(out));
    expect(first.report.status).toBe('completed');
    const lines: string[] = [];
    const again = await runJob(config(out), { log: (l) => lines.push(l) });
    expect(again.report.totals).toEqual(first.report.totals);
    expect(lines.join('\n')).toMatch(/already complete/);
    const manifest = await readManifest(out);
    expect(manifest?.complete).toBe(true);
    const parts = (await readdir(out)).filter((f) => f.startsWith('part-'));
    expect(parts.sort()).toEqual(first.parts.map((p) => p.file).sort());
  });

  it('refuses other result-deciding settings, naming the keys, unless forced', async () => {
    const out = path.join(dir, 'mismatch');
    // An interrupted run: only the header and the first checkpoints exist.
    const stop = new AbortController();
    const first = runJob(config(out, { engine: { checkpointSeconds: 0.1, graceSeconds: 0 } }), {
      signal: stop.signal,
    });
    setTimeout(() => stop.abort(), 1500);
    expect((await first).report.status).toBe('interrupted');
    const other = config(out, {
      air: { refine: { maxIterations: 2 } },
      filter: { minWords: 60, maxWords: 2048 },
    });
    const error = await failureOf(runJob(other));
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toMatch(/air\.refine\.maxIterations: 5 -> 2/);
    expect(error.message).toMatch(/filter\.minWords: 50 -> 60/);
    expect(error.message).toMatch(/--force/);
    // The same settings with other throughput knobs resume fine.
    const resumed = await runJob(
      config(out, { air: { documentsInFlight: 8 }, engine: { queueCapacity: 64 } }),
    );
    expect(resumed.report.status).toBe('completed');
    expect(resumed.report.totals.read).toBe(300);
  });

  it('refuses a shard replaced between the run and its resume', async () => {
    const shard = path.join(dir, 'shard.parquet');
    await copyFile(SAMPLE, shard);
    const out = path.join(dir, 'replaced');
    const stop = new AbortController();
    const first = runJob(
      parseRunConfig({
        input: shard,
        output: out,
        llm: { mode: 'sim' },
        progress: 'off',
        engine: { graceSeconds: 0 },
      }),
      { signal: stop.signal },
    );
    setTimeout(() => stop.abort(), 800);
    await first;
    const later = new Date(Date.now() + 60_000);
    await utimes(shard, later, later);
    const error = await failureOf(
      runJob(parseRunConfig({ input: shard, output: out, llm: { mode: 'sim' }, progress: 'off' })),
    );
    expect(error.message).toMatch(
      /shard\.parquet: the shard changed since the interrupted run \(mtimeMs differ\)/,
    );
  });

  it('removes a part a crash left unrecorded, and refuses a folder of parts without a manifest', async () => {
    const out = path.join(dir, 'orphan');
    const stop = new AbortController();
    const first = runJob(config(out, { writer: { partSeconds: 0.2 }, engine: { graceSeconds: 0 } }), {
      signal: stop.signal,
    });
    setTimeout(() => stop.abort(), 3000);
    await first;
    const manifest = (await readManifest(out))!;
    const recorded = manifest.commits.filter((c) => c.part !== null).length;
    // A part renamed into place whose manifest entry never made it: it must go, or its rows would be doubled.
    await copyFile(SAMPLE, path.join(out, `part-${String(recorded + 500).padStart(5, '0')}.parquet`));
    await writeFile(path.join(out, MANIFEST_FILE), '{"kind":"commit","torn', { flag: 'a' });
    const resumed = await runJob(config(out, { writer: { partSeconds: 0.2 } }));
    expect(resumed.report.status).toBe('completed');
    const files = (await readdir(out)).filter((f) => f.startsWith('part-'));
    expect(files).not.toContain(`part-${String(recorded + 500).padStart(5, '0')}.parquet`);
    const count = Number((await query(`select count(*) from read_parquet('${out}/part-*.parquet')`))[0]![0]);
    expect(count).toBe(resumed.report.totals.rowsWritten);
    const ids = await query(
      `select document_id, depth, count(*) c from read_parquet('${out}/part-*.parquet') group by all having c > 1`,
    );
    expect(ids).toEqual([]);

    const foreign = path.join(dir, 'foreign');
    await copyFile(SAMPLE, path.join(await mkdirp(foreign), 'part-00000.parquet'));
    const error = await failureOf(runJob(config(foreign)));
    expect(error.message).toMatch(/holds 1 part files but no manifest\.jsonl/);
  });
});

describe('instruction dedupe across a resume', () => {
  it('indexes the instructions written before the interruption before any new row reaches it', async () => {
    const out = path.join(dir, 'instructions');
    const settings = { writer: { partSeconds: 0.2 }, engine: { checkpointSeconds: 0.1, graceSeconds: 0 } };
    const stop = new AbortController();
    const first = runJob(config(out, settings), { signal: stop.signal });
    // Interrupt once a part with rows is on record.
    for (let waited = 0; waited < 60_000; waited += 100) {
      const recorded = (await readManifest(out).catch(() => undefined))?.commits ?? [];
      if (recorded.some((c) => c.part !== null && c.rows > 0)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    stop.abort();
    expect((await first).report.status).toBe('interrupted');
    const written = (await readManifest(out))!.commits.reduce(
      (n, c) => n + (c.part === null ? 0 : c.rows),
      0,
    );
    expect(written).toBeGreaterThan(0);
    const lines: string[] = [];
    const resumed = await runJob(config(out, settings), { log: (l) => lines.push(l) });
    expect(resumed.report.status).toBe('completed');
    expect(lines).toContain(`instruction dedupe: ${written} written instructions indexed`);
  }, 120_000);
});

describe('failure rows', () => {
  it('records that fail go to failed/ with kind, message and raw reply; the ledger counts them', async () => {
    const out = path.join(dir, 'faults');
    const result = await runJob(
      config(out, {
        llm: { mode: 'sim', simulator: { faults: { rateTruncated: 0.3 } } },
        air: { maxTokens: { polish: 64, answer: 64 } },
      }),
    );
    expect(result.report.status).toBe('completed');
    const failed = Object.values(result.report.totals.failed).reduce((a, b) => a + b, 0);
    expect(failed).toBeGreaterThan(0);
    const rows = await query(
      `select stage, error_kind, message, raw_reply from read_parquet('${out}/failed/*.parquet')`,
    );
    expect(rows.length).toBeGreaterThanOrEqual(failed);
    for (const [stage, kind, message] of rows) {
      expect(String(stage)).toMatch(/^(generate|refine|merge|score)$/);
      expect(String(kind)).toMatch(/^AIR_/);
      expect(String(message).length).toBeGreaterThan(0);
    }
    expect(rows.some((r) => typeof r[3] === 'string' && (r[3] as string).length > 0)).toBe(true);
    const ledger = JSON.parse(await readFile(path.join(out, 'ledger.json'), 'utf8')) as {
      failureRows: number;
    };
    expect(ledger.failureRows).toBe(rows.length);
  });

  it('a run whose records mostly fail stops early with the counts', async () => {
    const out = path.join(dir, 'ceiling');
    const result = await runJob(
      config(out, {
        llm: { mode: 'sim', simulator: { faults: { rate500: 1 } }, guidance: { model: 'x', maxAttempts: 1 } },
        engine: { maxFailureRate: 0.2, minRowsForFailureRate: 20 },
        dedupe: { exact: false, near: { enabled: false }, instructions: { enabled: false } },
      }),
    );
    expect(result.report.status).toBe('failed');
    expect(result.report.errorCode).toBe('AIR_FAILURE_RATE');
    expect(result.report.error).toMatch(/settled rows failed .*ceiling 20\.0%.*AIR_LLM/);
  });
});

async function failureOf(promise: Promise<unknown>): Promise<Error> {
  const outcome = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(outcome instanceof Error)) throw new Error('expected the run to be refused');
  return outcome;
}

async function mkdirp(folder: string): Promise<string> {
  await mkdir(folder, { recursive: true });
  return folder;
}

describe('air retry-failed', () => {
  it('runs again only the rows that failed, and the ledger and output come out as one run', async () => {
    const { startSimulator } = await import('../llm/simulator/index.js');
    const { runAir } = await import('./helpers/cli.js');
    const flaky = await startSimulator({
      models: ['g', 's'],
      rate500: 0.15,
      decodeTokensPerSPerSequence: 4000,
    });
    const out = path.join(dir, 'retry');
    const endpoint = { baseUrl: flaky.url, maxAttempts: 1 };
    const first = await runJob(
      parseRunConfig({
        input: SAMPLE,
        output: out,
        source: { limit: 120 },
        llm: { guidance: { ...endpoint, model: 'g' }, student: { ...endpoint, model: 's' } },
        progress: 'off',
      }),
    );
    const port = flaky.port;
    await flaky.close();
    const failed = Object.values(first.report.totals.failed).reduce((a, b) => a + b, 0);
    expect(failed).toBeGreaterThan(0);
    const healthy = await startSimulator({ models: ['g', 's'], port, decodeTokensPerSPerSequence: 4000 });
    try {
      const retried = await runAir(['retry-failed', out, '--progress', 'off']);
      expect(retried.code, retried.stderr).toBe(0);
      expect(retried.stderr).toMatch(new RegExp(`retrying ${failed} failed input rows`));
      const ledger = JSON.parse(await readFile(path.join(out, 'ledger.json'), 'utf8')) as {
        totals: {
          read: number;
          written: number;
          dropped: Record<string, number>;
          failed: Record<string, number>;
        };
      };
      const t = ledger.totals;
      expect(t.read).toBe(120);
      expect(Object.values(t.failed).reduce((a, b) => a + b, 0)).toBe(0);
      expect(t.written + Object.values(t.dropped).reduce((a, b) => a + b, 0)).toBe(120);
      expect(t.written).toBeGreaterThan(first.report.totals.written);
      const dups = await query(
        `select document_id, depth, count(*) c from read_parquet('${out}/part-*.parquet') group by all having c > 1`,
      );
      expect(dups).toEqual([]);
      const again = await runAir(['retry-failed', out, '--progress', 'off']);
      expect(again.stderr).toMatch(/no failed rows to retry/);
    } finally {
      await healthy.close();
    }
  }, 300_000);
});
