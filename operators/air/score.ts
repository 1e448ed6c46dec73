import { emit, type Outcome, type RecordOperator } from '../../pipeline/operator.js';
import { measureInstruction } from '../instruction-metrics.js';
import { readComplexityQuality, SCORE_SCHEMA } from './replies.js';
import type { StepRunner } from './steps.js';
import type { CallRecord, Example, ScoredExample } from './types.js';

export interface ScoreOptions {
  /** Ask the guidance model for complexity and quality (1-10); the model-free metrics are always computed. */
  readonly llm: boolean;
  readonly concurrency: number;
}

export const DEFAULT_SCORE: ScoreOptions = { llm: true, concurrency: 64 };

/** The step score calls, with its completion budget (tokens): two small integers. */
export const SCORE_TOKENS = { score: 256 } as const;

/**
 * LLM-judged complexity and quality (how the paper compares datasets), plus model-free measures: words and
 * the constraint types the rule-based tagger finds in the instruction.
 */
export function score(
  steps: StepRunner,
  options: ScoreOptions = DEFAULT_SCORE,
): RecordOperator<Example, ScoredExample> {
  if (options.llm) steps.uses('score', SCORE_TOKENS);
  return {
    name: 'score',
    concurrency: options.concurrency,
    async process(example, ctx): Promise<Outcome<ScoredExample>> {
      const metrics = measureInstruction(example.instruction, example.output);
      let complexity: number | null = null;
      let quality: number | null = null;
      let calls = example.calls;
      if (options.llm) {
        const log: CallRecord[] = [...example.calls];
        const at = { docId: example.doc.id, iteration: example.depth, calls: log, signal: ctx.signal };
        const value = await steps.json(
          'score',
          { instruction: example.instruction, response: example.output },
          SCORE_SCHEMA,
          at,
        );
        ({ complexity, quality } = readComplexityQuality(value));
        calls = log;
        ctx.count('calls', 1);
        ctx.count(`complexity:${complexity}`);
        ctx.count(`quality:${quality}`);
      }
      ctx.count('tagged_constraints', metrics.constraintCount);
      return emit({
        ...example,
        calls,
        complexity,
        quality,
        instructionWords: metrics.instructionWords,
        outputWords: metrics.outputWords,
        taggedTypes: metrics.constraintTypes,
      });
    },
  };
}
