/**
 * Calls per accepted instruction, counted the same way for both sides: every call spent on a document
 * (generate through its final answers) is charged to that document, and a document is filed under the depth
 * of its deepest accepted instruction (one that passed the method's validity rules).
 */
import type { PromptStep } from '../../operators/air/prompts.js';
import type { CallRecord } from '../../operators/air/types.js';

export const DEPTHS = [1, 2, 3, 4, 5] as const;

/** Which stage of air's graph each step belongs to (the baseline's calls are filed the same way). */
export const STAGE_OF_STEP: Readonly<Record<PromptStep, string>> = {
  instruction: 'generate',
  'instruction-score': 'generate',
  polish: 'refine',
  student: 'refine',
  judge: 'refine',
  'judge-check': 'refine',
  duplicate: 'refine',
  check: 'refine',
  merge: 'merge',
  answer: 'merge',
  score: 'score',
};

/** One document that yielded at least one accepted instruction. */
export interface DocumentYield {
  /** Every call spent on the document. */
  readonly calls: number;
  /** Depths of its accepted instructions. */
  readonly depths: readonly number[];
}

export interface DepthFigures {
  readonly depth: number;
  /** Documents whose deepest accepted instruction has this depth. */
  readonly documents: number;
  /** Every call spent on those documents. */
  readonly calls: number;
  /** calls / documents: what one instruction of this depth (with its chain) cost. */
  readonly callsPerDocument: number | null;
  /** Accepted instructions of this depth, from any document (the baseline also keeps the shallower ones). */
  readonly instructions: number;
}

export interface Yield {
  /** Accepted instructions (rows that passed the validity rules). */
  readonly accepted: number;
  readonly documentsWithInstruction: number;
  readonly byDepth: readonly DepthFigures[];
}

export function tally(documents: readonly DocumentYield[]): Yield {
  const byDepth = DEPTHS.map((depth) => ({ depth, documents: 0, calls: 0, instructions: 0 }));
  let accepted = 0;
  for (const doc of documents) {
    if (doc.depths.length === 0) continue;
    const deepest = byDepth[Math.max(...doc.depths) - 1];
    if (deepest === undefined) throw new RangeError(`depth ${Math.max(...doc.depths)} is outside 1-5`);
    deepest.documents += 1;
    deepest.calls += doc.calls;
    for (const depth of doc.depths) byDepth[depth - 1]!.instructions += 1;
    accepted += doc.depths.length;
  }
  return {
    accepted,
    documentsWithInstruction: byDepth.reduce((n, d) => n + d.documents, 0),
    byDepth: byDepth.map((d) => ({ ...d, callsPerDocument: d.documents > 0 ? d.calls / d.documents : null })),
  };
}

/** Steps made once per output row; every other call of a row is shared by all rows of its document. */
const PER_ROW_STEPS = new Set(['merge', 'answer', 'score']);

/**
 * Documents from air's output rows. With `depths: deepest` a row's calls are all its document's calls; with
 * `all`, rows share the calls before merge, so those are counted once. (A row the validity filter dropped is
 * not seen: with `all`, its merge and answer calls are missing from its document's count.)
 */
export function yieldsFromRows(
  rows: readonly {
    readonly doc: { readonly sourceFile: string; readonly sourceRow: number };
    readonly depth: number;
    readonly calls: readonly CallRecord[];
  }[],
): DocumentYield[] {
  // Keyed by where the document was read, not by its id: the two bundled samples share 691 ids.
  const byDoc = new Map<string, { shared: number; own: number; depths: number[] }>();
  for (const row of rows) {
    const own = row.calls.filter((c) => PER_ROW_STEPS.has(c.step)).length;
    const key = `${row.doc.sourceFile}#${row.doc.sourceRow}`;
    const entry = byDoc.get(key);
    if (entry === undefined) {
      byDoc.set(key, { shared: row.calls.length - own, own, depths: [row.depth] });
    } else {
      entry.own += own;
      entry.depths.push(row.depth);
    }
  }
  return [...byDoc.values()].map((d) => ({ calls: d.shared + d.own, depths: d.depths }));
}

/** Calls by stage of air's graph. */
export function callsByStage(calls: Iterable<CallRecord>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const call of calls) {
    const stage = STAGE_OF_STEP[call.step as PromptStep] ?? call.step;
    counts[stage] = (counts[stage] ?? 0) + 1;
  }
  return counts;
}
