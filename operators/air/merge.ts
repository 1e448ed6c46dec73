import { emit, type Outcome, type RecordOperator } from '../../pipeline/operator.js';
import { MERGE_SCHEMA, readInstruction } from './replies.js';
import type { StepRunner } from './steps.js';
import type { CallRecord, Example, Refined } from './types.js';

export interface MergeOptions {
  /** `deepest`: one row per document at the depth it reached; `all`: a row for every depth 1..reached. */
  readonly depths: 'deepest' | 'all';
  readonly concurrency: number;
}

export const DEFAULT_MERGE: MergeOptions = { depths: 'deepest', concurrency: 64 };

/** The steps merge calls, with their completion budgets (tokens): room for an answer of up to ~2K tokens. */
export const MERGE_TOKENS = { merge: 800, answer: 2048 } as const;

/**
 * Merges the initial instruction and the accepted constraints into one natural instruction, then has the
 * guidance model answer it without the document. Only depths actually reached are merged (the reference code
 * merges and answers all five, even for documents with no constraint).
 */
export function merge(
  steps: StepRunner,
  options: MergeOptions = DEFAULT_MERGE,
): RecordOperator<Refined, Example> {
  steps.uses('merge', MERGE_TOKENS);
  return {
    name: 'merge',
    concurrency: options.concurrency,
    async process(refined, ctx): Promise<Outcome<Example>> {
      const reached = refined.constraints.length;
      const depths = options.depths === 'all' ? range(1, reached) : [reached];
      const examples: Example[] = [];
      for (const depth of depths) {
        // Each depth's row carries the calls up to refinement plus its own merge and answer.
        const calls: CallRecord[] = [...refined.calls];
        const at = { docId: refined.doc.id, iteration: depth, calls, signal: ctx.signal };
        const constraints = refined.constraints.slice(0, depth);
        const instruction = readInstruction(
          await steps.json(
            'merge',
            {
              examples: steps.mergeExample(depth),
              instruction: refined.initialInstruction,
              constraints: constraints.map((c, i) => `${i + 1}. ${c.text}`).join('\n'),
            },
            MERGE_SCHEMA,
            at,
          ),
        );
        const output = await steps.text('answer', { instruction }, at);
        ctx.count('calls', calls.length - refined.calls.length);
        examples.push({ ...refined, constraints, depth, instruction, output, calls });
      }
      return emit(...examples);
    },
  };
}

function range(from: number, to: number): number[] {
  const values: number[] = [];
  for (let i = from; i <= to; i++) values.push(i);
  return values;
}
