import { copyFile, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRunConfig, type RunConfigInput } from '../job/config.js';
import { LLM_CACHE_FILE } from '../job/llm.js';
import { runJob, type JobResult } from '../job/run-job.js';
import type { PromptStep } from '../operators/air/prompts.js';
import { REFERENCE_CALLS } from '../operators/air/refine.js';
import type { StageSteps } from '../operators/air/steps.js';
import { CONSTRAINT_TYPES } from '../operators/constraint-tagger.js';
import { sumValues } from '../pipeline/stats.js';
import { DOLMA, query, tempDir } from './helpers/duckdb.js';

// The whole method against the simulator, on the 727 real Dolma documents of ../shared/data/web. The
// simulator's replies are seeded nonsense, but schema-valid or deliberately not, so every stop rule fires.

interface Row {
  document_id: string;
  depth: number;
  depth_reached: number;
  stop_reason: string;
  constraints: Array<{ type: string; text: string; iteration: number; student_check: number | null }>;
  history: Array<{ iteration: number; verdict: string; student_check: number | null }>;
  calls: Array<{ step: string; role: string; cached: boolean }>;
  instruction: string;
  output: string;
  input: string;
  complexity: number | null;
  quality: number | null;
  prompt_version: string;
  config_fingerprint: string;
}

/** The steps of the stages before, and after, the stage at `index` (flattened, in order). */
const stepsBefore = (layout: readonly StageSteps[], index: number): string[] =>
  layout.slice(0, index).flatMap((s) => s.steps);
const stepsAfter = (layout: readonly StageSteps[], index: number): string[] =>
  layout.slice(index + 1).flatMap((s) => s.steps);

let dir: string;
let cleanup: () => Promise<void>;
const config = (output: string, extra: Partial<RunConfigInput> = {}) =>
  parseRunConfig({
    input: DOLMA,
    output,
    llm: { mode: 'sim' },
    // Three rounds, so the iteration limit fires as well as the judge's own stop rules.
    air: { documentsInFlight: 32, refine: { maxIterations: 3 } },
    progress: 'off',
    ...extra,
  });

async function rowsOf(out: string): Promise<Row[]> {
  const rows = await query(
    `select to_json(t)::varchar from read_parquet('${out}/part-*.parquet') t order by document_id, depth`,
  );
  return rows.map((r) => JSON.parse(r[0] as string) as Row);
}

let first: JobResult;
let firstRows: Row[];

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir());
  first = await runJob(config(path.join(dir, 'a')));
  firstRows = await rowsOf(path.join(dir, 'a'));
}, 600_000);
afterAll(() => cleanup());

describe('air run --llm sim on real documents', () => {
  it('balances the ledger: each input written, dropped with a reason or failed with an error kind', () => {
    const { report } = first;
    expect(report.status, report.error).toBe('completed');
    const t = report.totals;
    expect(t.read).toBe(727);
    expect(t.written + sumValues(t.dropped) + sumValues(t.failed)).toBe(727);
    expect(t.written).toBeGreaterThan(10);
    expect(firstRows).toHaveLength(t.rowsWritten);
  });

  it("names every drop reason after one of the run's own stages", async () => {
    const stages = new Set(first.report.stages.map((s) => s.name));
    for (const reason of Object.keys(first.report.totals.dropped)) {
      const [stage, why] = reason.split(':');
      expect(stages, reason).toContain(stage);
      expect(why, reason).toMatch(/^[a-z_0-9]+$/);
    }
    const ledger = JSON.parse(await readFile(first.ledgerFile, 'utf8')) as { llm: { promptVersion: string } };
    expect(ledger.llm.promptVersion).toMatch(/^v2\+/);
  });

  it('writes consistent rows: depth = constraints, no type twice, history agrees, Alpaca columns filled', () => {
    const known = new Set<string>(CONSTRAINT_TYPES.map((c) => c.id));
    for (const row of firstRows) {
      expect(row.depth).toBe(row.constraints.length);
      expect(row.depth).toBe(row.depth_reached); // deepest depth only, by default
      expect(row.depth).toBeGreaterThanOrEqual(1);
      expect(row.depth).toBeLessThanOrEqual(3);
      const types = row.constraints.map((c) => c.type);
      expect(new Set(types).size).toBe(types.length);
      for (const type of types) expect(known.has(type)).toBe(true);
      const accepted = row.history.filter((h) => h.verdict === 'accepted');
      expect(accepted.map((h) => h.iteration)).toEqual(row.constraints.map((c) => c.iteration));
      expect(row.input).toBe('');
      expect(row.instruction.length).toBeGreaterThan(0);
      expect(row.output.length).toBeGreaterThan(0);
      expect(row.complexity).toBeGreaterThanOrEqual(1);
      expect(row.quality).toBeLessThanOrEqual(10);
    }
  });

  it('keeps only constraints the student missed when asked, and stops within the round limit', () => {
    for (const row of firstRows) {
      for (const c of row.constraints) expect(c.student_check).toBeLessThan(3); // the student-check gate
      expect(row.history.length).toBeLessThanOrEqual(3);
      if (row.stop_reason === 'max_iterations') expect(row.history).toHaveLength(3);
      else expect(row.history.at(-1)!.verdict).not.toBe('accepted');
    }
  });

  it("makes each row's calls in the order of the run's stages, each stage calling only its own steps", () => {
    const layout = first.llm!.callLayout!;
    const stageOf = new Map(layout.flatMap(({ steps }, i) => steps.map((step) => [step, i] as const)));
    const refine = layout.findIndex((s) => s.stage === 'refine');
    expect(refine).toBeGreaterThan(0);
    for (const row of firstRows) {
      const steps = row.calls.map((c) => c.step);
      const order = steps.map((step) => stageOf.get(step as PromptStep));
      expect(order).not.toContain(undefined);
      expect(order).toEqual([...order].sort((a, b) => a! - b!));
      // The stages before and after the refinement loop make each of their calls once, in declared order.
      expect(steps.slice(0, stepsBefore(layout, refine).length)).toEqual(stepsBefore(layout, refine));
      expect(steps.slice(-stepsAfter(layout, refine).length)).toEqual(stepsAfter(layout, refine));
    }
  });

  it('makes one judge call per round and no duplicate-check call in the folded layout', () => {
    // polish + answer open the loop; per round one judge call (carrying the previous round's check) and a
    // student call when the proposal was valid and new; one check call of its own at most, for a last
    // constraint no judge call followed; the duplicate check needs no call.
    const layout = first.llm!.callLayout!;
    const opening = stepsBefore(
      layout,
      layout.findIndex((s) => s.stage === 'refine'),
    ).length;
    for (const row of firstRows) {
      const steps = row.calls.map((c) => c.step);
      expect(steps.slice(opening, opening + 2)).toEqual(['polish', 'student']);
      expect(steps.filter((s) => s === 'judge' || s === 'judge-check')).toHaveLength(row.history.length);
      expect(steps.filter((s) => s === 'check').length).toBeLessThanOrEqual(1);
      expect(steps).not.toContain('duplicate');
      expect(row.calls.filter((c) => c.role === 'student').length).toBe(
        1 + row.history.filter((h) => h.verdict === 'accepted' || h.verdict === 'gated').length,
      );
    }
  });

  it('reaches every stop rule over the run and records the stop reasons', () => {
    const reasons = new Set(firstRows.map((r) => r.stop_reason));
    for (const reason of ['max_iterations', 'no_constraint', 'invalid_constraint']) {
      expect(reasons, reason).toContain(reason);
    }
    const refine = first.report.stages.find((s) => s.name === 'refine')!;
    expect(Object.keys(refine.counters).filter((k) => k.startsWith('stop:')).length).toBeGreaterThanOrEqual(
      3,
    );
    expect(refine.counters['iterations']).toBeGreaterThan(0);
  });

  it('with the reference call layout: check and duplicate-check calls each round, and the duplicate stop', async () => {
    const out = path.join(dir, 'reference-calls');
    const result = await runJob(
      config(out, {
        source: { limit: 300 },
        air: {
          documentsInFlight: 32,
          refine: { maxIterations: 3, ...REFERENCE_CALLS },
        },
      }),
    );
    expect(result.report.status, result.report.error).toBe('completed');
    const rows = await rowsOf(out);
    expect(rows.length).toBeGreaterThan(5);
    // The simulator's duplicate verdicts are coin flips: over 300 documents one stops a loop.
    expect(new Set(rows.map((r) => r.stop_reason))).toContain('duplicate');
    for (const row of rows) {
      const steps = row.calls.map((c) => c.step);
      expect(steps).not.toContain('judge-check');
      expect(steps.filter((s) => s === 'judge')).toHaveLength(row.history.length);
      const answered = row.history.filter((h) => h.verdict === 'accepted' || h.verdict === 'gated').length;
      expect(steps.filter((s) => s === 'check')).toHaveLength(answered);
      // A duplicate check for each proposal that came after an accepted constraint and was valid.
      const checkedForDuplicates = row.history.filter(
        (h) =>
          (h.verdict === 'accepted' || h.verdict === 'gated' || h.verdict === 'duplicate') &&
          row.constraints.some((c) => c.iteration < h.iteration),
      ).length;
      expect(steps.filter((s) => s === 'duplicate')).toHaveLength(checkedForDuplicates);
    }
  }, 600_000);

  it('a rerun of the same config answers every answered call from the cache and writes the same rows', async () => {
    const out = path.join(dir, 'b');
    await mkdir(out);
    await copyFile(path.join(dir, 'a', LLM_CACHE_FILE), path.join(out, LLM_CACHE_FILE));
    const again = await runJob(config(out));
    expect(again.report.status).toBe('completed');
    // Only calls that failed the first time (a reply cut twice at max_tokens, say) reach the server again: they
    // were never answered, so never cached, and they fail the same records the same way.
    const failedCalls = sumValues(first.llm!.accounting.totals.errors);
    expect(again.llm!.cache.misses).toBeLessThanOrEqual(2 * failedCalls);
    if (failedCalls === 0) expect(again.llm!.cache.misses).toBe(0);
    expect(again.report.totals.failed).toEqual(first.report.totals.failed);
    expect(again.llm!.cache.hits).toBeGreaterThan(firstRows.length * 10);
    const rows = await rowsOf(out);
    const strip = (r: Row) => ({ ...r, calls: r.calls.map((c) => c.step) });
    expect(rows.map(strip)).toEqual(firstRows.map(strip));
    expect(rows.every((r) => r.calls.every((c) => c.cached))).toBe(true);
  }, 600_000);

  it('every depth on request: rows for depths 1..reached, sharing one refinement', async () => {
    const out = path.join(dir, 'all');
    const result = await runJob(
      config(out, { air: { documentsInFlight: 32, refine: { maxIterations: 3 }, depths: 'all' } }),
    );
    expect(result.report.status).toBe('completed');
    const rows = await rowsOf(out);
    const byDoc = new Map<string, Row[]>();
    for (const r of rows) byDoc.set(r.document_id, [...(byDoc.get(r.document_id) ?? []), r]);
    let multi = 0;
    for (const docRows of byDoc.values()) {
      const reached = docRows[0]!.depth_reached;
      const depths = docRows.map((r) => r.depth);
      // A depth can be filtered out on its own (e.g. a merged instruction too long), never invented.
      for (const d of depths) expect(d).toBeLessThanOrEqual(reached);
      if (depths.length > 1) multi++;
    }
    expect(multi).toBeGreaterThan(0);
    expect(result.report.totals.rowsWritten).toBe(rows.length);
  }, 600_000);
});
