import type { ChatOptions, ChatResult, JsonSchema, LlmClient } from '../../llm/types.js';
import { AirError } from '../../pipeline/errors.js';
import { fmix32, fnv1a32 } from '../../pipeline/hash.js';
import type { PromptSet, PromptStep } from './prompts.js';
import type { CallRecord } from './types.js';

/** The model roles of the method: the large model guides, the small one is taught. */
export const GUIDANCE = 'guidance';
export const STUDENT = 'student';

export interface StepSettings {
  /** Mixed with the document id, step and iteration into each call's sampling seed. */
  readonly seed: number;
  /** Completion budgets over the ones the stages declare, by step (the config's `air.maxTokens`). */
  readonly maxTokens?: Readonly<Record<string, number>>;
}

/** Where a call is made from: which document, which iteration, and the row's call log to append to. */
export interface CallSite {
  readonly docId: string;
  readonly iteration: number;
  readonly calls: CallRecord[];
  readonly signal: AbortSignal;
}

/** A reply the method cannot use although the LLM layer accepted it (an empty answer). */
export class EmptyReplyError extends AirError<'AIR_EMPTY_REPLY'> {
  constructor(step: string, docId: string) {
    super('AIR_EMPTY_REPLY', `${step}: the model's reply for document ${docId} is empty`);
    this.name = 'EmptyReplyError';
  }
}

/** A stage and the prompt steps it calls, in the order it calls them on a document's way through. */
export interface StageSteps {
  readonly stage: string;
  readonly steps: readonly PromptStep[];
}

/**
 * Runs one AIR step: renders its prompt, derives a per-call seed (so reruns are reproducible and documents
 * still differ), calls the step's role, and records tokens and latency on the row.
 */
export class StepRunner {
  /** Declared steps and their completion budgets (tokens). */
  private readonly declared = new Map<PromptStep, number>();
  private readonly stages: StageSteps[] = [];

  constructor(
    private readonly llm: LlmClient,
    private readonly prompts: PromptSet,
    private readonly settings: StepSettings,
  ) {}

  /**
   * Declares the steps a stage may call, with each one's completion budget (each operator does so when it is
   * built, in stage order). Only declared steps can be called, so the prompt version below names every prompt a
   * row can have been made with, and the layout says which stage makes which calls.
   */
  uses(stage: string, budgets: Readonly<Record<PromptStep, number>>): void {
    const steps = Object.keys(budgets);
    for (const step of steps) {
      if (!this.prompts.has(step)) {
        throw new Error(`stage "${stage}" calls the step "${step}", which has no template in the prompt set`);
      }
      const budget = budgets[step]!;
      const before = this.declared.get(step);
      // Two stages calling one step must agree on its budget, or the second would silently set both.
      if (before !== undefined && before !== budget) {
        throw new Error(
          `stage "${stage}" declares the step "${step}" with ${budget} tokens, another with ${before}`,
        );
      }
      this.declared.set(step, budget);
    }
    this.stages.push({ stage, steps });
  }

  /** The stages that call models, in the order they declared their steps (stage order), with their steps. */
  get layout(): readonly StageSteps[] {
    return this.stages;
  }

  /** The version of the declared steps' prompts: the same for every row of a run, once its stages are built. */
  get promptVersion(): string {
    return this.prompts.versionOf(this.declared.keys());
  }

  /** A free-text step; an empty reply is an error (the reference code crashed on those). */
  async text(step: PromptStep, values: Readonly<Record<string, string>>, at: CallSite): Promise<string> {
    const result = await this.call(step, values, at);
    const text = result.text.trim();
    if (text === '') throw new EmptyReplyError(step, at.docId);
    return text;
  }

  /** A structured step: the parsed, schema-valid JSON value. */
  async json(
    step: PromptStep,
    values: Readonly<Record<string, string>>,
    schema: { readonly name: string; readonly schema: JsonSchema },
    at: CallSite,
  ): Promise<unknown> {
    const result = await this.call(step, values, at, schema);
    return result.json;
  }

  mergeExample(depth: number): string {
    return this.prompts.mergeExample(depth);
  }

  private async call(
    step: PromptStep,
    values: Readonly<Record<string, string>>,
    at: CallSite,
    schema?: ChatOptions['schema'],
  ): Promise<ChatResult> {
    if (!this.declared.has(step)) throw new Error(`step "${step}" is called but was never declared (uses)`);
    const role = step === 'student' ? STUDENT : GUIDANCE;
    const seed = fmix32(fnv1a32(`${this.settings.seed}\0${at.docId}\0${step}\0${at.iteration}`)) & 0x7fffffff;
    const result = await this.llm.chat(role, this.prompts.render(step, values), {
      max_tokens: this.settings.maxTokens?.[step] ?? this.declared.get(step),
      seed,
      schema,
      // A student's answer is only compared with the reference: a cut one still shows what it misses.
      acceptTruncated: step === 'student',
      signal: at.signal,
      step,
    });
    at.calls.push({
      step,
      iteration: at.iteration,
      role,
      model: result.model,
      promptTokens: result.usage.promptTokens,
      completionTokens: result.usage.completionTokens,
      latencyMs: Math.round(result.latencyMs),
      cached: result.cached,
      attempts: result.attempts,
    });
    return result;
  }
}
