/**
 * The optional LLM constraint counter (issue 11): the model lists the separate constraints an instruction places
 * on its response and the count is the list's length. The model-free count cannot see premises and facts added to
 * a situation (bench/RESULTS-tagger.md); a model reads them. Only an `LlmClient` is seen here: endpoints, the
 * response cache, retries, admission control and the repair of invalid JSON are the client's.
 */
import { LlmError } from '../llm/errors.js';
import type { ChatMessage, JsonSchema, LlmClient, Role } from '../llm/types.js';
import { fmix32, fnv1a32 } from '../pipeline/hash.js';
import type { ConstraintCounter } from './constraint-counter.js';
import { CONSTRAINT_TYPES } from './constraint-tagger.js';
import { mapConcurrent } from '../pipeline/concurrent.js';

export const CONSTRAINT_LIST_TYPES: readonly string[] = [...CONSTRAINT_TYPES.map((t) => t.id), 'other'];

/** The reply asked for, by constrained decoding where the server supports it. */
export const CONSTRAINT_LIST_SCHEMA: { readonly name: string; readonly schema: JsonSchema } = {
  name: 'air_constraint_list',
  schema: {
    type: 'object',
    properties: {
      constraints: {
        type: 'array',
        maxItems: 40,
        items: {
          type: 'object',
          properties: {
            type: { type: 'string', enum: CONSTRAINT_LIST_TYPES },
            text: { type: 'string', minLength: 1, maxLength: 300 },
          },
          required: ['type', 'text'],
          additionalProperties: false,
        },
      },
    },
    required: ['constraints'],
    additionalProperties: false,
  },
};

const SYSTEM = [
  'You analyse instructions written for an AI assistant. List every separate constraint the instruction places',
  'on the response: anything beyond the bare task that limits or shapes what a correct answer may be. Kinds of',
  'constraint include the format or structure of the answer, its length, content it must include or leave out,',
  'its style, tone or persona, its audience, the language to answer in, and the premises, facts or conditions',
  'of a described situation that the answer has to respect.',
  'Count each demand once, even when several demands are of the same kind; do not split one demand into parts,',
  'and do not count the task itself. An instruction with no constraint gets an empty list.',
  `Give each constraint a type, one of: ${CONSTRAINT_LIST_TYPES.join(', ')}; and quote or paraphrase it briefly.`,
  'Reply with JSON only: {"constraints": [{"type": "...", "text": "..."}]}.',
].join(' ');

export function constraintListMessages(instruction: string): ChatMessage[] {
  return [
    { role: 'system', content: SYSTEM },
    { role: 'user', content: `Instruction:\n<<<\n${instruction}\n>>>` },
  ];
}

export interface LlmCounterOptions {
  readonly role: Role;
  /** The model's name, for reports. */
  readonly model: string;
  /** Calls in flight at most (the client's admission control may allow fewer). */
  readonly concurrency: number;
  /** Each call's seed is derived from it and the instruction, so a rerun asks the same (cacheable) requests. */
  readonly seed: number;
  readonly maxTokens: number;
}

export class LlmConstraintCounter implements ConstraintCounter {
  readonly label: string;

  constructor(
    private readonly client: LlmClient,
    private readonly options: LlmCounterOptions,
  ) {
    this.label = `LLM: ${options.model}`;
  }

  async count(instructions: readonly string[], signal?: AbortSignal): Promise<number[]> {
    return mapConcurrent(instructions, this.options.concurrency, (instruction, index) =>
      this.countOne(instruction, index, signal),
    );
  }

  private async countOne(instruction: string, index: number, signal?: AbortSignal): Promise<number> {
    const seed = fmix32(fnv1a32(`${this.options.seed}\0${instruction}`)) & 0x7fffffff;
    let json: unknown;
    try {
      const result = await this.client.chat(this.options.role, constraintListMessages(instruction), {
        schema: CONSTRAINT_LIST_SCHEMA,
        seed,
        temperature: 0,
        max_tokens: this.options.maxTokens,
        signal,
      });
      json = result.json;
    } catch (error) {
      if (error instanceof LlmError) {
        throw new LlmError(error.code, `constraint count of instruction ${index}: ${error.message}`, {
          status: error.status,
          raw: error.raw,
          cause: error,
        });
      }
      throw error;
    }
    // The client validated the reply against the schema; a client without that (a test double) is checked here.
    const list = (json as { constraints?: unknown } | undefined)?.constraints;
    if (!Array.isArray(list)) {
      throw new LlmError(
        'AIR_LLM_INVALID_OUTPUT',
        `constraint count of instruction ${index}: the reply has no "constraints" list`,
        { raw: JSON.stringify(json) },
      );
    }
    return list.length;
  }
}
