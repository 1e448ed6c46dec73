import type { JsonSchema } from '../../llm/types.js';
import { CONSTRAINT_TYPES, type ConstraintType } from '../constraint-tagger.js';
import { countWords } from '../length-filter.js';

/**
 * The JSON each structured AIR step asks for, and the checks applied to what comes back. The LLM layer has
 * already parsed the reply and validated it against the schema; these functions apply the method's own rules,
 * which a JSON schema cannot state (word counts, forbidden references, type matching), and never trust the
 * reply's shape blindly: a server without constrained decoding may send anything the schema allows loosely.
 */

type Schema = { readonly name: string; readonly schema: JsonSchema };

function object(name: string, properties: Record<string, JsonSchema>): Schema {
  return {
    name,
    schema: { type: 'object', properties, required: Object.keys(properties), additionalProperties: false },
  };
}

const text = (maxLength: number, minLength = 1): JsonSchema => ({ type: 'string', minLength, maxLength });
const score = (minimum: number, maximum: number): JsonSchema => ({ type: 'integer', minimum, maximum });

export const INSTRUCTION_SCHEMA = object('air_instruction', { instruction: text(600, 10) });
export const INSTRUCTION_SCORE_SCHEMA = object('air_instruction_score', {
  reason: text(600),
  score: score(0, 5),
});
export const DUPLICATE_SCHEMA = object('air_duplicate', {
  duplicate: { type: 'boolean' },
  reason: text(600),
});
export const CHECK_SCHEMA = object('air_check', { reason: text(600), score: score(0, 3) });
export const MERGE_SCHEMA = object('air_merge', { instruction: text(2000, 10) });
export const SCORE_SCHEMA = object('air_score', {
  reason: text(600),
  complexity: score(1, 10),
  quality: score(1, 10),
});

const LABEL: ReadonlyMap<ConstraintType, string> = new Map(CONSTRAINT_TYPES.map((t) => [t.id, t.label]));

export function labelOf(type: ConstraintType): string {
  return LABEL.get(type)!;
}

/**
 * The judge may only name a type not used yet (or "none"); the enum makes constrained decoding enforce it.
 * `withCheck`: the judge first grades the answer against the constraint added last (0-3), the student check
 * folded into the call that reads the same answer anyway.
 */
export function judgeSchema(allowed: readonly ConstraintType[], withCheck = false): Schema {
  const judge = {
    analysis: text(1500),
    type: { type: 'string', enum: [...allowed.map(labelOf), 'none'] },
    constraint: text(400, 0),
  };
  return withCheck
    ? object('air_judge_check', { check_reason: text(600), check: score(0, 3), ...judge })
    : object('air_judge', judge);
}

// ---- reading replies ------------------------------------------------------------------------------------

function field(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[name] : undefined;
}

function stringField(value: unknown, name: string): string {
  const v = field(value, name);
  return typeof v === 'string' ? v.trim() : '';
}

function integerField(value: unknown, name: string, lo: number, hi: number): number | undefined {
  const v = field(value, name);
  return typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi ? v : undefined;
}

export class ReplyRuleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReplyRuleError';
  }
}

/** The instruction of an `air_instruction` or `air_merge` reply (unwrapped from quotes the model may add). */
export function readInstruction(value: unknown): string {
  const instruction = unquote(stringField(value, 'instruction'));
  if (instruction === '') throw new ReplyRuleError('the reply has no instruction');
  return instruction;
}

export function readScore(value: unknown, lo: number, hi: number): number {
  const score = integerField(value, 'score', lo, hi);
  if (score === undefined) throw new ReplyRuleError(`the reply has no integer score in ${lo}-${hi}`);
  return score;
}

/** The 0-3 check a judge-and-check reply carries; undefined when it is missing or out of range. */
export function readFoldedCheck(value: unknown): number | undefined {
  return integerField(value, 'check', 0, 3);
}

export function readDuplicate(value: unknown): boolean {
  const duplicate = field(value, 'duplicate');
  if (typeof duplicate !== 'boolean') throw new ReplyRuleError('the reply has no boolean "duplicate"');
  return duplicate;
}

export function readComplexityQuality(value: unknown): { complexity: number; quality: number } {
  const complexity = integerField(value, 'complexity', 1, 10);
  const quality = integerField(value, 'quality', 1, 10);
  if (complexity === undefined || quality === undefined) {
    throw new ReplyRuleError('the reply needs integer "complexity" and "quality" in 1-10');
  }
  return { complexity, quality };
}

export type JudgeReading =
  | { readonly kind: 'none'; readonly analysis: string }
  | {
      readonly kind: 'constraint';
      readonly analysis: string;
      readonly type: ConstraintType;
      readonly text: string;
    }
  | {
      readonly kind: 'invalid';
      readonly analysis: string;
      readonly type: ConstraintType | null;
      readonly text: string;
      readonly why: string;
    };

export interface ConstraintRules {
  readonly minWords: number;
  readonly maxWords: number;
}

/** The method's acceptance window for a constraint: 3 to 26 words. */
export const DEFAULT_CONSTRAINT_RULES: ConstraintRules = { minWords: 3, maxWords: 26 };

/** Phrases that leak the judge's setting into the instruction the student will see. */
const LEAKS = [
  /\boutput\s*[12]\b/i,
  /\boutput\s+(one|two)\b/i,
  /\b(the\s+)?original\s+instruction\b/i,
  /\b(the\s+)?reference\s+(answer|output|response)\b/i,
];

/** Applies the method's rules to a judge reply: a type among `allowed`, 3-26 words, no leaked references. */
export function readJudge(
  value: unknown,
  allowed: readonly ConstraintType[],
  rules: ConstraintRules = DEFAULT_CONSTRAINT_RULES,
): JudgeReading {
  const analysis = stringField(value, 'analysis');
  const typeText = stringField(value, 'type');
  const constraint = unquote(stringField(value, 'constraint'));
  if (isNone(typeText) || (typeText === '' && constraint === '')) return { kind: 'none', analysis };
  const type = matchConstraintType(typeText);
  const invalid = (why: string): JudgeReading => ({ kind: 'invalid', analysis, type, text: constraint, why });
  if (type === null) return invalid(`"${typeText}" is not a constraint type`);
  if (!allowed.includes(type)) return invalid(`type "${labelOf(type)}" was already used`);
  if (constraint === '') return invalid('the constraint is empty');
  const words = countWords(constraint);
  if (words < rules.minWords || words > rules.maxWords) {
    return invalid(`the constraint has ${words} words (allowed ${rules.minWords}-${rules.maxWords})`);
  }
  const leak = LEAKS.find((pattern) => pattern.test(constraint));
  if (leak !== undefined) return invalid('the constraint refers to the outputs or the original instruction');
  return { kind: 'constraint', analysis, type, text: constraint };
}

function isNone(typeText: string): boolean {
  return /^(none|null|n\/a|no constraint|nothing)\.?$/i.test(typeText.trim());
}

function squash(text: string): string {
  return text
    .toLowerCase()
    .replace(/&/g, ' and ')
    .replace(/[^a-z]+/g, ' ')
    .trim();
}

/** Extra names models use for the canonical types (matched after lower-casing and dropping punctuation). */
const ALIASES: Readonly<Record<string, ConstraintType>> = {
  format: 'data_format',
  'output format': 'data_format',
  structure: 'document_structure',
  'domain format': 'domain_format',
  'domain specific': 'domain_format',
  include: 'inclusion',
  exclude: 'exclusion',
  citations: 'citation',
  reference: 'citation',
  references: 'citation',
  'prior conditions': 'prior_condition',
  precondition: 'prior_condition',
  condition: 'prior_condition',
  audience: 'target_audience',
  tone: 'tone_style',
  style: 'tone_style',
  'tone style': 'tone_style',
  'tone and style': 'tone_style',
  emotions: 'emotion',
  'emotional tone': 'emotion',
  linguistic: 'linguistic',
  language: 'linguistic',
  'linguistic characteristic': 'linguistic',
  multilingualism: 'multilingual',
  'multi lingual': 'multilingual',
  translation: 'multilingual',
};

const BY_NAME = new Map<string, ConstraintType>();
for (const { id, label } of CONSTRAINT_TYPES) {
  BY_NAME.set(squash(label), id);
  BY_NAME.set(squash(id.replace(/_/g, ' ')), id);
}
for (const [alias, id] of Object.entries(ALIASES)) BY_NAME.set(squash(alias), id);

/**
 * Maps what a model wrote as a type to the canonical list: exact label or id, a known alias, or, failing
 * those, the one type whose label starts the text ("Inclusion of examples" → inclusion). Null when none fits.
 */
export function matchConstraintType(text: string): ConstraintType | null {
  const key = squash(text.replace(/\bconstraints?\b/gi, ''));
  if (key === '') return null;
  const direct = BY_NAME.get(key);
  if (direct !== undefined) return direct;
  const prefixed = [...BY_NAME.entries()].filter(([name]) => key.startsWith(`${name} `));
  const types = new Set(prefixed.map(([, id]) => id));
  return types.size === 1 ? [...types][0]! : null;
}

function unquote(text: string): string {
  const trimmed = text.trim();
  const match = /^["'“‘«](.*)["'”’»]$/s.exec(trimmed);
  return (match ? match[1]! : trimmed).trim();
}
