/**
 * What `air score` and the tagger bench ask of a constraint counter: how many constraints each instruction states.
 * The model-free count (constraint-count.ts) is the default; llm-constraint-counter.ts asks a model instead.
 * Both count a batch so that a model-backed counter can keep several calls in flight.
 */
import { countConstraints } from './constraint-count.js';

export interface ConstraintCounter {
  /** For reports: "model-free" or "LLM: <model>". */
  readonly label: string;
  /** One count per instruction, in order. */
  count(instructions: readonly string[], signal?: AbortSignal): Promise<number[]>;
}

export const modelFreeCounter: ConstraintCounter = {
  label: 'model-free',
  count: (instructions) => Promise.resolve(instructions.map((i) => countConstraints(i))),
};
