import { readFileSync } from 'node:fs';
import path from 'node:path';
import { spearman } from './spearman.js';

/** One labelled instruction: `level` is the number of constraints it states (FollowBench's levels 0-5). */
export interface LabelledInstruction {
  readonly instruction: string;
  readonly level: number;
  readonly category: string;
  readonly exampleId: number;
}

export const FOLLOWBENCH_DEV = path.resolve(
  import.meta.dirname,
  '../../../shared/data/instructions/followbench-dev.jsonl',
);

export function readLabelled(file: string): LabelledInstruction[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const row = JSON.parse(line) as Record<string, unknown>;
      const { instruction, level, category, example_id: exampleId } = row;
      if (
        typeof instruction !== 'string' ||
        typeof level !== 'number' ||
        typeof category !== 'string' ||
        typeof exampleId !== 'number'
      ) {
        throw new Error(`${file}: malformed row ${line.slice(0, 80)}`);
      }
      return { instruction, level, category, exampleId };
    });
}

/** Spearman of level vs a measure over a set of rows. */
export function rankCorrelation(
  rows: readonly LabelledInstruction[],
  measure: (row: LabelledInstruction) => number,
): number {
  return spearman(
    rows.map((r) => r.level),
    rows.map(measure),
  );
}

/**
 * Mean Spearman within each example (rows sharing category and example_id: one task at increasing levels,
 * so topic and task length are held fixed). Examples where the measure is constant count as 0: a measure that
 * cannot tell the levels apart has no ranking, and dropping those examples would flatter it.
 */
export function withinExampleCorrelation(
  rows: readonly LabelledInstruction[],
  measure: (row: LabelledInstruction) => number,
): number {
  const groups = new Map<string, LabelledInstruction[]>();
  for (const row of rows) {
    const key = `${row.category}/${row.exampleId}`;
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  let sum = 0;
  let n = 0;
  for (const group of groups.values()) {
    if (new Set(group.map((r) => r.level)).size < 2) continue;
    const rho = rankCorrelation(group, measure);
    sum += Number.isNaN(rho) ? 0 : rho;
    n++;
  }
  return n === 0 ? Number.NaN : sum / n;
}
