import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../cli/air.js';
import { parseRunConfig } from '../job/config.js';
import { runJob } from '../job/run-job.js';
import { mergeStats, mergeTime, StatsCollector } from '../report/stats/collector.js';
import { readStatsFile } from '../report/stats/stats-file.js';
import type { ExactDistribution, LogDistribution, RunStats } from '../schemas/stats.js';
import { parseRunStats } from '../report/stats/stats-file.js';
import { SAMPLE, query, tempDir, writeParquet } from './helpers/duckdb.js';

// The real job against the simulator on the 300 real documents of examples/data, once over two shards and once
// per shard, then the stats the job wrote while streaming are checked against the Parquet it wrote (DuckDB),
// against each other (merge of the halves = the whole) and against `air stats` (recomputed from the files).

let dir: string;
let cleanup: () => Promise<void>;
let whole: RunStats;
let halves: [RunStats, RunStats];
const out = (name: string): string => path.join(dir, name);
const parts = (name: string): string => `read_parquet('${out(name)}/part-*.parquet')`;

/**
 * Dedupe is off: it decides across the whole input (a document of the second shard that repeats one of the
 * first is dropped only when both run together), so it is the one part of a run that cannot merge.
 */
const config = (input: string[], output: string) =>
  parseRunConfig({
    input,
    output,
    llm: { mode: 'sim' },
    air: { documentsInFlight: 32 },
    dedupe: { exact: false, near: { enabled: false }, instructions: { enabled: false } },
    progress: 'off',
  });

async function runStats(name: string): Promise<RunStats> {
  const file = path.join(out(name), 'stats.json');
  const stats = await readStatsFile(file);
  if (stats === undefined) {
    throw new Error(`${file} is missing: job/run-job.ts must call writeRunStats() at the end of a run`);
  }
  return stats;
}

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('air-stats-'));
  const shard = (where: string, name: string) =>
    writeParquet(
      path.join(dir, name),
      `select * exclude (file_row_number) from read_parquet('${SAMPLE}', file_row_number = true) where ${where}`,
    );
  const a = await shard('file_row_number < 150', 'a.parquet');
  const b = await shard('file_row_number >= 150', 'b.parquet');
  for (const [input, name] of [
    [[a, b], 'whole'],
    [[a], 'half-a'],
    [[b], 'half-b'],
  ] as const) {
    const result = await runJob(config([...input], out(name)));
    expect(result.report.status, result.report.error).toBe('completed');
  }
  whole = await runStats('whole');
  halves = [await runStats('half-a'), await runStats('half-b')];
}, 600_000);
afterAll(() => cleanup());

/** The value at rank floor(q·(n-1)) of the sorted values: the definition the stats use. */
const ranked = (expr: string, q: number) =>
  `list_sort(list(${expr}))[floor(${q} * (count(${expr}) - 1))::int + 1]`;

async function expectLogDistribution(d: LogDistribution, expr: string, from: string): Promise<void> {
  const [row] = await query(
    `select count(x), sum(x), min(x), max(x), ${ranked('x', 0.5)}, ${ranked('x', 0.9)}, ${ranked('x', 0.99)} ` +
      `from (select ${expr} as x from ${from}) where x is not null`,
  );
  const [n, sum, min, max, p50, p90, p99] = row!.map((v) => (v === null ? null : Number(v)));
  expect(d.summary.count, expr).toBe(n);
  expect(d.histogram.sum, expr).toBe(sum);
  expect(d.summary.mean, expr).toBeCloseTo(sum! / n!, 9);
  expect([d.summary.min, d.summary.max], expr).toEqual([min, max]);
  // Log buckets of 1% relative accuracy, reported as integers (word counts).
  for (const [got, exact] of [
    [d.summary.p50, p50],
    [d.summary.p90, p90],
    [d.summary.p99, p99],
  ] as const) {
    expect(Math.abs(got! - exact!), `${expr}: ${got} vs ${exact}`).toBeLessThanOrEqual(0.01 * exact! + 0.5);
  }
}

async function countsBy(expr: string, from: string): Promise<Record<string, number>> {
  const rows = await query(`select ${expr} as k, count(*) from ${from} where ${expr} is not null group by k`);
  return Object.fromEntries(rows.map(([k, n]) => [String(k), Number(n)]));
}

async function expectExactDistribution(d: ExactDistribution, expr: string, from: string): Promise<void> {
  expect(d.counts, expr).toEqual(await countsBy(expr, from));
  const [row] = await query(
    `select avg(x), ${ranked('x', 0.5)}, ${ranked('x', 0.9)}, ${ranked('x', 0.99)} from (select ${expr} as x from ${from}) where x is not null`,
  );
  const [mean, p50, p90, p99] = row!.map((v) => (v === null ? null : Number(v)));
  expect(d.summary.mean ?? 0, expr).toBeCloseTo(mean ?? 0, 9);
  expect([d.summary.p50, d.summary.p90, d.summary.p99], expr).toEqual([p50, p90, p99]);
}

/** Wall-clock measures (timeline, latencies, busy time) and the input paths (in the fingerprint) differ by run. */
function mergeable(stats: RunStats): unknown {
  // What the server found in its prefix cache depends on what it served before, as latency does on its load.
  const untimed = (a: RunStats['rowCalls']) => ({
    ...a,
    entries: a.entries.map(({ latency: _l, latencyHistogram: _h, ...rest }) => rest),
    steps:
      a.steps &&
      Object.fromEntries(
        Object.entries(a.steps).map(([step, { serverCachedTokens: _c, ...rest }]) => [step, rest]),
      ),
  });
  return {
    ...stats,
    origin: undefined,
    time: undefined,
    provenance: { ...stats.provenance, configFingerprints: undefined },
    funnel: stats.funnel && {
      ...stats.funnel,
      status: undefined,
      stages: stats.funnel.stages.map(({ busyMs: _b, ...rest }) => rest),
    },
    llm: stats.llm && { ...stats.llm, accounting: untimed(stats.llm.accounting) },
    rowCalls: untimed(stats.rowCalls),
  };
}

describe('stats.json written while the run streams', () => {
  it('validates against schemas/stats.ts and covers every row and input the ledger counts', async () => {
    expect(whole.origin).toBe('stream');
    expect(whole.kind).toBe('air');
    const [[rows]] = (await query(`select count(*) from ${parts('whole')}`)) as [[bigint]];
    expect(whole.rows).toBe(Number(rows));
    expect(whole.rows).toBeGreaterThan(10);
    const ledger = JSON.parse(await readFile(path.join(out('whole'), 'ledger.json'), 'utf8')) as {
      totals: Record<string, unknown>;
      stages: Array<{ name: string; counters: Record<string, number> }>;
      llm: { accounting: unknown; cache: { hits: number; misses: number } };
      wallMs: number;
    };
    const { read, written, rowsWritten, abandoned, dropped, failed } = whole.funnel!;
    expect({ read, written, rowsWritten, abandoned, dropped, failed }).toEqual(
      Object.fromEntries(
        Object.entries(ledger.totals).filter(([k]) =>
          ['read', 'written', 'rowsWritten', 'abandoned', 'dropped', 'failed'].includes(k),
        ),
      ),
    );
    expect(whole.funnel!.stages.map((s) => s.name)).toEqual(ledger.stages.map((s) => s.name));
    const { hits, misses } = ledger.llm.cache;
    expect(whole.llm).toEqual({ accounting: ledger.llm.accounting, cache: { hits, misses } });
    expect(whole.time.wallMs).toBe(ledger.wallMs);
    // Every row was timed: the timeline holds them all.
    expect(whole.time.buckets.reduce((n, b) => n + b.rows, 0)).toBe(whole.rows);
    // Refine's own counters are the judge's proposals per type.
    const refine = ledger.stages.find((s) => s.name === 'refine')!;
    for (const [type, c] of Object.entries(whole.constraintTypes)) {
      expect(c.chosen, type).toBe(refine.counters[`type_chosen:${type}`] ?? 0);
      expect(c.gated, type).toBe(refine.counters[`type_gated:${type}`] ?? 0);
      expect(c.duplicate, type).toBe(refine.counters[`type_duplicate:${type}`] ?? 0);
    }
    expect(Object.values(whole.constraintTypes).reduce((n, c) => n + c.chosen, 0)).toBeGreaterThan(0);
  });

  it('has the distributions a direct computation over the written Parquet gives (DuckDB)', async () => {
    const from = parts('whole');
    const d = whole.distributions;
    const words = (column: string) => `len(regexp_extract_all(${column}, '[^\\s]+'))`;
    await expectLogDistribution(d.instructionWords, 'instruction_words', from);
    await expectLogDistribution(d.instructionWords, words('instruction'), from);
    await expectLogDistribution(d.outputWords, 'output_words', from);
    await expectLogDistribution(d.initialInstructionWords, words('initial_instruction'), from);
    await expectLogDistribution(d.documentWords, 'document_words', from);
    await expectExactDistribution(d.depth, 'depth', from);
    await expectExactDistribution(d.depthReached, 'depth_reached', from);
    await expectExactDistribution(d.constraintsPerInstruction, 'len(constraints)', from);
    await expectExactDistribution(d.initialScore, 'initial_score', from);
    await expectExactDistribution(d.complexity, 'complexity', from);
    await expectExactDistribution(d.quality, 'quality', from);
    await expectExactDistribution(d.taggedTypes, 'len(tagged_types)', from);
    await expectExactDistribution(d.callsPerRow, 'len(calls)', from);
    expect(whole.complexityQuality).toEqual(await countsBy(`complexity || ',' || quality`, from));
    expect(whole.stopReasons).toEqual(await countsBy('stop_reason', from));
  });

  it('counts constraint types, source domains and the LLM calls on the rows as the Parquet has them', async () => {
    const from = parts('whole');
    const merged = await countsBy('t', `(select unnest(constraints).type as t from ${from})`);
    const tagged = await countsBy('t', `(select unnest(tagged_types) as t from ${from})`);
    for (const [type, c] of Object.entries(whole.constraintTypes)) {
      expect(c.merged, type).toBe(merged[type] ?? 0);
      expect(c.tagged, type).toBe(tagged[type] ?? 0);
    }
    const host = `regexp_replace(lower(regexp_extract(url, '^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/?#]*@)?([^:/?#]+)', 1)), '^www\\.', '')`;
    const hosts = await countsBy(host, `(select * from ${from} where ${host} <> '')`);
    expect(Object.keys(hosts).length).toBeGreaterThan(5);
    expect(whole.domains.hosts).toEqual(hosts);
    const [[noUrl]] = (await query(`select count(*) from ${from} where coalesce(${host}, '') = ''`)) as [
      [bigint],
    ];
    expect(whole.domains.missing).toBe(Number(noUrl));
    const unnested = `(select unnest(calls) as c from ${from})`;
    const calls = await query(
      `select c.role, c.model, count(*), sum(c.prompt_tokens) filter (not c.cached), ` +
        `sum(c.completion_tokens) filter (not c.cached), count(*) filter (c.cached) from ${unnested} group by all order by all`,
    );
    expect(calls.length).toBe(2);
    expect(
      whole.rowCalls.entries.map((e) => [
        e.role,
        e.model,
        e.calls,
        e.promptTokens,
        e.completionTokens,
        e.cacheHits,
      ]),
    ).toEqual(calls.map((r) => r.map((v) => (typeof v === 'bigint' ? Number(v) : v))));
    const latency = await query(
      `select c.role, c.model, ${ranked('c.latency_ms', 0.5)} from ${unnested} where not c.cached group by all order by all`,
    );
    for (const [i, e] of whole.rowCalls.entries.entries()) {
      const p50 = Number(latency[i]![2]);
      expect(Math.abs(e.latency.p50! - p50), e.role).toBeLessThanOrEqual(0.01 * p50 + 1e-9);
    }
  });
});

describe('merging stats', () => {
  it('merges the stats of two half-runs into the stats of one run over both (wall-clock measures apart)', () => {
    const merged = mergeStats(halves[0], halves[1]);
    expect(merged.origin).toBe('merged');
    expect(halves[0].rows).toBeGreaterThan(0);
    expect(halves[1].rows).toBeGreaterThan(0);
    expect(mergeable(merged)).toEqual(mergeable(whole));
    // Merging is commutative, and its result is valid stats.json.
    expect(mergeable(mergeStats(halves[1], halves[0]))).toEqual(mergeable(merged));
    expect(parseRunStats(JSON.parse(JSON.stringify(merged)), 'merged')).toEqual(merged);
    // What differs by design: runs by status add up, wall times add, both fingerprints are kept.
    expect(merged.funnel!.status).toEqual({ completed: 2, interrupted: 0, failed: 0 });
    expect(merged.time.wallMs).toBeCloseTo(halves[0].time.wallMs! + halves[1].time.wallMs!, 6);
    expect(merged.provenance.configFingerprints).toHaveLength(2);
    expect(merged.time.buckets.reduce((n, b) => n + b.rows, 0)).toBe(whole.rows);
  });

  it('adds timelines by wall-clock minute, so processes running at once add up', () => {
    let now = Date.UTC(2026, 0, 1, 12, 0, 10);
    const clock = () => now;
    const row = (latency: number) => ({
      instruction: 'Write a haiku.',
      calls: [{ role: 'guidance', model: 'm', latency_ms: latency, cached: false }],
    });
    const a = new StatsCollector({ kind: 'instructions', clock });
    a.row(row(100));
    now += 30_000;
    a.row(row(300));
    now += 40_000; // the next minute
    a.row(row(200));
    a.finish();
    const b = new StatsCollector({ kind: 'instructions', clock });
    b.row(row(50));
    b.finish();
    const sa = a.snapshot();
    expect(sa.time.buckets).toEqual([
      { at: Date.UTC(2026, 0, 1, 12, 0), rows: 2, calls: 2, latencyMsSum: 400, latencyCount: 2 },
      { at: Date.UTC(2026, 0, 1, 12, 1), rows: 1, calls: 1, latencyMsSum: 200, latencyCount: 1 },
    ]);
    const merged = mergeTime(sa.time, b.snapshot().time);
    expect(merged.buckets[1]).toEqual({
      at: Date.UTC(2026, 0, 1, 12, 1),
      rows: 2,
      calls: 2,
      latencyMsSum: 250,
      latencyCount: 2,
    });
    expect(merged.wallMs).toBe(70_000);
    expect([merged.startedAt, merged.finishedAt]).toEqual([Date.UTC(2026, 0, 1, 12, 0, 10), now]);
    expect(() => mergeTime(sa.time, { ...sa.time, bucketMs: 1000 })).toThrow(/1000 ms/);
    expect(() => mergeStats(sa, { ...whole })).toThrow(/cannot merge stats of air rows/);
  });

  it('refuses a stats.json that does not match the schema, naming the file and the field', async () => {
    const file = path.join(dir, 'broken.json');
    await writeFile(file, JSON.stringify({ ...whole, rows: -1 }));
    await expect(readStatsFile(file)).rejects.toThrow(/broken\.json.*rows/);
  });
});

describe('air stats <folder>', () => {
  it('recomputes from the Parquet files and ledger.json the stats the run streamed', async () => {
    const copy = out('copy');
    await mkdir(copy);
    for (const name of await readdir(out('whole'))) {
      if (/^part-.*\.parquet$|^ledger\.json$/.test(name))
        await copyFile(path.join(out('whole'), name), path.join(copy, name));
    }
    let stdout = '';
    const code = await main(['stats', copy], {
      stdout: (t) => (stdout += t),
      stderr: (t) => (stdout += t),
      isTTY: false,
    });
    expect(code, stdout).toBe(0);
    expect(stdout).toMatch(/rows from 1 file/);
    const recomputed = (await readStatsFile(path.join(copy, 'stats.json')))!;
    expect(recomputed.origin).toBe('parquet');
    expect({ ...recomputed, origin: undefined, time: undefined }).toEqual({
      ...whole,
      origin: undefined,
      time: undefined,
    });
    // Rows carry no write time: the wall time comes from the ledger, the timeline is gone.
    expect(recomputed.time.wallMs).toBe(whole.time.wallMs);
    expect(recomputed.time.buckets).toEqual([]);
    for (const file of ['report.html', 'README.md'])
      expect((await readdir(copy)).includes(file), file).toBe(true);
  });

  it('keeps the timeline of the run’s own stats.json when the rows are the same', async () => {
    let stdout = '';
    const io = { stdout: (t: string) => (stdout += t), stderr: (t: string) => (stdout += t), isTTY: false };
    expect(await main(['stats', out('whole')], io), stdout).toBe(0);
    expect(stdout).toMatch(/timeline kept/);
    const again = (await readStatsFile(path.join(out('whole'), 'stats.json')))!;
    expect(again.time).toEqual(whole.time);
  });

  it('reads a dataset without air’s columns: words and tags computed as `air score` does', async () => {
    const baseline = path.join(dir, 'baseline.jsonl');
    await writeFile(
      baseline,
      [
        { instruction: 'Write a formal email to a client in under 100 words.', output: 'Dear client, ...' },
        { instruction: 'List three fruits as a JSON array.', output: '["apple", "pear", "fig"]' },
        { instruction: 'Explain photosynthesis.' },
      ]
        .map((r) => JSON.stringify(r))
        .join('\n'),
    );
    const { statsFromOutput } = await import('../report/stats/read-output.js');
    const { stats, columns } = await statsFromOutput(baseline);
    expect(stats.kind).toBe('instructions');
    expect(stats.funnel).toBeNull();
    expect(columns.map((c) => c.name)).toEqual(['instruction', 'output']);
    expect(stats.distributions.instructionWords.summary).toMatchObject({ count: 3, min: 2, max: 11 });
    expect(stats.distributions.outputWords.summary.count).toBe(2);
    expect(stats.constraintTypes.data_format!.tagged).toBe(1);
    expect(stats.distributions.taggedTypes.summary.count).toBe(3);
  });
});
