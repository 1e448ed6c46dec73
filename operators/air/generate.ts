import { drop, emit, type Outcome, type RecordOperator } from '../../pipeline/operator.js';
import type { Document } from '../../schemas/documents.js';
import { countWords } from '../length-filter.js';
import { INSTRUCTION_SCHEMA, INSTRUCTION_SCORE_SCHEMA, readInstruction, readScore } from './replies.js';
import type { StepRunner } from './steps.js';
import type { CallRecord, Seeded } from './types.js';

export interface GenerateOptions {
  /** Keep instructions whose 0-5 quality score is at least this (method: 4). */
  readonly minScore: number;
  /** Word window of the initial instruction (method: 3-50). */
  readonly minWords: number;
  readonly maxWords: number;
  /** Documents in flight in this stage at once. */
  readonly concurrency: number;
}

export const DEFAULT_GENERATE: GenerateOptions = { minScore: 4, minWords: 3, maxWords: 50, concurrency: 64 };

/** The steps generate calls, with their completion budgets (tokens). */
export const GENERATE_TOKENS = { instruction: 256, 'instruction-score': 256 } as const;

/**
 * Stage 1 of the method: back-translate the document into one instruction (the document is its answer), then
 * score the instruction on the 0-5 rubric. Drops: `instruction_length`, `low_score`.
 */
export function generate(
  steps: StepRunner,
  options: GenerateOptions = DEFAULT_GENERATE,
): RecordOperator<Document, Seeded> {
  steps.uses('generate', GENERATE_TOKENS);
  return {
    name: 'generate',
    concurrency: options.concurrency,
    async process(doc, ctx): Promise<Outcome<Seeded>> {
      const calls: CallRecord[] = [];
      const at = { docId: doc.id, iteration: 0, calls, signal: ctx.signal };
      const instruction = readInstruction(
        await steps.json('instruction', { document: doc.text }, INSTRUCTION_SCHEMA, at),
      );
      const words = countWords(instruction);
      if (words < options.minWords || words > options.maxWords) {
        ctx.count('calls', calls.length);
        return drop('instruction_length');
      }
      const score = readScore(
        await steps.json('instruction-score', { instruction }, INSTRUCTION_SCORE_SCHEMA, at),
        0,
        5,
      );
      ctx.count('calls', calls.length);
      ctx.count(`score_${score}`);
      if (score < options.minScore) return drop('low_score');
      const { text, ...ref } = doc;
      return emit({
        doc: { ...ref, words: countWords(text) },
        text,
        initialInstruction: instruction,
        initialScore: score,
        calls,
      });
    },
  };
}
