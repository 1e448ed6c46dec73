/**
 * What `air score` and the tagger bench ask of an optional counter beside the model-free count (which every
 * row gets from constraint-count.ts): how many constraints each instruction states. llm-constraint-counter.ts
 * asks a model; it counts a batch so that it can keep several calls in flight.
 */

export interface ConstraintCounter {
  /** For reports: "model-free" or "LLM: <model>". */
  readonly label: string;
  /** One count per instruction, in order. */
  count(instructions: readonly string[], signal?: AbortSignal): Promise<number[]>;
}
