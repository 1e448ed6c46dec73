import type { MetaColumnType } from './documents.js';
import { defineTable, t, type TableSchema } from './types.js';

/**
 * One AIR training example per row: Alpaca's `instruction` / `input` / `output` first (so the file loads as an
 * Alpaca dataset as it is), then where it came from and how it was made.
 */
export const airFields = {
  instruction: t.string(),
  input: t.string(),
  output: t.string(),
  document_id: t.string(),
  source_file: t.string(),
  source_row: t.int64(),
  document_words: t.int32(),
  initial_instruction: t.string(),
  initial_score: t.int32(),
  reference: t.string(),
  depth: t.int32(),
  depth_reached: t.int32(),
  stop_reason: t.string(),
  constraints: t.list(
    t.struct({
      type: t.string(),
      text: t.string(),
      iteration: t.int32(),
      student_check: t.nullable(t.int32()),
    }),
  ),
  history: t.list(
    t.struct({
      iteration: t.int32(),
      student_answer: t.string(),
      judge_analysis: t.string(),
      judge_type: t.nullable(t.string()),
      judge_constraint: t.nullable(t.string()),
      verdict: t.string(),
      note: t.string(),
      revised_answer: t.nullable(t.string()),
      student_check: t.nullable(t.int32()),
    }),
  ),
  complexity: t.nullable(t.int32()),
  quality: t.nullable(t.int32()),
  instruction_words: t.int32(),
  output_words: t.int32(),
  tagged_types: t.list(t.string()),
  guidance_model: t.string(),
  student_model: t.string(),
  prompt_version: t.string(),
  config_fingerprint: t.string(),
  calls: t.list(
    t.struct({
      step: t.string(),
      iteration: t.int32(),
      role: t.string(),
      model: t.string(),
      prompt_tokens: t.int32(),
      completion_tokens: t.int32(),
      latency_ms: t.int32(),
      cached: t.bool(),
      attempts: t.int32(),
    }),
  ),
} as const;

export const AIR_DESCRIPTIONS: Readonly<Record<keyof typeof airFields, string>> = {
  instruction: 'the merged complex instruction (Alpaca "instruction")',
  input: 'always empty: the instruction is self-contained (Alpaca "input")',
  output: 'the guidance model\'s answer to the instruction, written without the document (Alpaca "output")',
  document_id: 'id of the source document',
  source_file: 'input shard of the source document',
  source_row: 'row of the source document in its shard (0-based)',
  document_words: 'whitespace-separated words of the source document',
  initial_instruction: 'the back-translated instruction the refinement started from',
  initial_score: "the initial instruction's 0-5 quality score",
  reference:
    'the document polished into an answer to the initial instruction (what the judge compared against)',
  depth: 'number of constraints merged into this instruction (the complexity level of the method)',
  depth_reached: 'number of constraints the refinement accepted for the document',
  stop_reason:
    'why the refinement loop ended: max_iterations, no_constraint, invalid_constraint, duplicate, types_exhausted',
  constraints:
    'the constraints merged here, in order: type (one of 12), text, iteration found, student check (0-3)',
  history:
    "every judge round: the student's answer, the judge's analysis and proposal, the verdict, the re-answer",
  complexity: 'LLM-judged complexity of the example (1-10), null when scoring is off',
  quality: 'LLM-judged quality of the example (1-10), null when scoring is off',
  instruction_words: 'whitespace-separated words in the instruction',
  output_words: 'whitespace-separated words in the output',
  tagged_types: 'constraint types the rule-based tagger finds stated in the instruction',
  guidance_model: 'model that wrote, judged, merged and answered',
  student_model: 'model whose shortfalls the constraints were mined from',
  prompt_version: 'prompt template set and a hash of its files',
  config_fingerprint: 'hash of the resolved run configuration that produced the row',
  calls:
    'every LLM call behind the row: step, iteration, role, model, tokens, latency, cache hit, HTTP attempts',
};

export function airTable(meta: Readonly<Record<string, MetaColumnType>>): TableSchema {
  for (const name of Object.keys(meta)) {
    if (name in airFields)
      throw new Error(`pass-through column "${name}" collides with a column air writes itself`);
  }
  return defineTable('air_examples', 1, { ...airFields, ...meta }, AIR_DESCRIPTIONS);
}
