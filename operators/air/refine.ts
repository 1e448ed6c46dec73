import type { RecordOperator } from '../../pipeline/operator.js';
import { RefineLoop } from './refine-loop.js';
import {
  checkRefineOptions,
  refineOptionsSchema,
  type RefineOperatorOptions,
  type RefineOptions,
} from './refine-options.js';
import type { StepRunner } from './steps.js';
import type { Refined, Seeded } from './types.js';

export { composeInstruction } from './refine-loop.js';

/** The method's settings, and as many documents in flight as a 64-slot server keeps busy. */
export const DEFAULT_REFINE: RefineOperatorOptions = { ...refineOptionsSchema.parse({}), concurrency: 128 };

/** The call layout of the reference code: a check call and a duplicate-check call of their own each round. */
export const REFERENCE_CALLS: Pick<RefineOptions, 'checkWithNextJudge' | 'duplicateCheck'> = {
  checkWithNextJudge: false,
  duplicateCheck: 'llm',
};

/**
 * Stage 2 of the method, per document: polish the document into a reference answer, let the student answer,
 * then up to `maxIterations` rounds of judge → duplicate check → student re-answer → 0-3 check (the steps
 * are RefineLoop's). A document with no accepted constraint is dropped (`no_constraint_accepted`); the
 * others go on with their whole history.
 */
export function refine(
  steps: StepRunner,
  { concurrency, ...given }: RefineOperatorOptions = DEFAULT_REFINE,
): RecordOperator<Seeded, Refined> {
  const options = checkRefineOptions(given);
  steps.uses('refine', RefineLoop.stepsUsed(options));
  return {
    name: 'refine',
    concurrency,
    async process(seed, ctx) {
      const loop = new RefineLoop(steps, options, seed, ctx);
      await loop.start();
      for (let k = 1; k <= options.maxIterations; k++) {
        if (!(await loop.round(k))) break;
      }
      return loop.finish();
    },
  };
}
