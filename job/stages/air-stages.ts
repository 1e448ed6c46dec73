import { generate } from '../../operators/air/generate.js';
import { merge } from '../../operators/air/merge.js';
import { loadPromptSet } from '../../operators/air/prompts.js';
import { refine } from '../../operators/air/refine.js';
import { constraintRules } from '../../operators/air/refine-options.js';
import { score } from '../../operators/air/score.js';
import { StepRunner, type StageSteps } from '../../operators/air/steps.js';
import type { ScoredExample } from '../../operators/air/types.js';
import { nearDedupe, type KnownRecord, type NearDedupe } from '../../operators/dedupe/near-dedupe.js';
import type { WorkerPool } from '../../pipeline/pool/worker-pool.js';
import { validityFilter } from '../../operators/air/validity-filter.js';
import type { LlmClient } from '../../llm/types.js';
import type { Pipeline } from '../../pipeline/run.js';
import type { Document } from '../../schemas/documents.js';
import type { AirConfig } from '../config.js';
import { ConfigError } from '../../pipeline/errors.js';

/** The AIR stages after document selection: generate → refine → merge → filter → score. */
export function appendAirStages(
  documents: Pipeline<Document>,
  llm: LlmClient,
  config: AirConfig,
): { pipeline: Pipeline<ScoredExample>; promptVersion: string; layout: readonly StageSteps[] } {
  const prompts = loadPromptSet(config.promptSet);
  const unknown = Object.keys(config.maxTokens).filter((step) => !prompts.has(step));
  if (unknown.length > 0) {
    throw new ConfigError(
      `air.maxTokens names ${unknown.map((s) => `"${s}"`).join(', ')}, not a step of the prompt set ` +
        `${config.promptSet} (steps: ${Object.keys(prompts.stepVersions).join(', ')})`,
    );
  }
  const steps = new StepRunner(llm, prompts, { seed: config.seed, maxTokens: config.maxTokens });
  const inFlight = config.documentsInFlight;
  const pipeline = documents
    .pipe(generate(steps, { ...config.generate, concurrency: inFlight }))
    .pipe(
      // A document holds its slot through ~15 sequential calls; twice the slots keep the servers fed.
      refine(steps, { ...config.refine, concurrency: inFlight * 2 }),
    )
    .pipe(merge(steps, { depths: config.depths, concurrency: inFlight }))
    .pipe(
      validityFilter({
        ...config.filter,
        constraintWords: constraintRules(config.refine),
      }),
    )
    .pipe(score(steps, { llm: config.llmScores, concurrency: inFlight }));
  // Read once every stage is built: each stage declared the steps it calls, and only those make the version.
  return { pipeline, promptVersion: steps.promptVersion, layout: steps.layout };
}

/**
 * Near-duplicate final instructions, after the LLM stages: the first to arrive is kept (which of two
 * near-identical instructions survives depends on timing). Replays never reach LLM stages, so on a resume the
 * stage learns the rows written before from `written` (the committed parts) before the run starts.
 */
export async function instructionDedupeStage(
  threshold: number,
  pool: WorkerPool,
  written: AsyncIterable<readonly KnownRecord[]> | undefined,
  options: { signal?: AbortSignal; log?: (line: string) => void },
): Promise<NearDedupe<ScoredExample>> {
  const stage = nearDedupe<ScoredExample>({
    name: 'instruction_dedupe',
    replay: false,
    threshold,
    textOf: (e) => e.instruction,
    idOf: (e) => `${e.doc.id}@${e.depth}`,
    pool,
  });
  if (written === undefined) return stage;
  const signal = options.signal ?? new AbortController().signal;
  try {
    await stage.prime(written, signal);
    options.log?.(`instruction dedupe: ${stage.kept} written instructions indexed`);
  } catch (error) {
    // Stopped while priming: the run sees the same signal and reports itself interrupted.
    if (!signal.aborted) throw error;
  }
  return stage;
}
