import { drop, emit, type Outcome, type RecordOperator } from '../../pipeline/operator.js';
import { CONSTRAINT_TYPES } from '../constraint-tagger.js';
import { countWords } from '../length-filter.js';
import { DEFAULT_CONSTRAINT_RULES, type ConstraintRules } from './replies.js';
import type { Example } from './types.js';

export interface ValidityOptions {
  /** Merged instruction word window (method: 3-150). */
  readonly minInstructionWords: number;
  readonly maxInstructionWords: number;
  /** The final output must have more than this many words (method: 3). */
  readonly minOutputWordsExclusive: number;
  readonly constraintWords: ConstraintRules;
}

export const DEFAULT_VALIDITY: ValidityOptions = {
  minInstructionWords: 3,
  maxInstructionWords: 150,
  minOutputWordsExclusive: 3,
  constraintWords: DEFAULT_CONSTRAINT_RULES,
};

const KNOWN_TYPES = new Set<string>(CONSTRAINT_TYPES.map((t) => t.id));

/**
 * The method's final validity rules. Every drop names its rule: `instruction_words`, `output_words`,
 * `depth_mismatch`, `type_repeated`, `constraint_invalid`.
 */
export function validityFilter(
  options: ValidityOptions = DEFAULT_VALIDITY,
): RecordOperator<Example, Example> {
  return {
    name: 'filter',
    process(example): Outcome<Example> {
      const reason = firstBrokenRule(example, options);
      return reason === undefined ? emit(example) : drop(reason);
    },
  };
}

export function firstBrokenRule(
  example: Example,
  options: ValidityOptions = DEFAULT_VALIDITY,
): string | undefined {
  const words = countWords(example.instruction);
  if (words < options.minInstructionWords || words > options.maxInstructionWords) return 'instruction_words';
  if (countWords(example.output) <= options.minOutputWordsExclusive) return 'output_words';
  if (example.depth !== example.constraints.length || example.depth < 1) return 'depth_mismatch';
  const types = new Set<string>();
  for (const constraint of example.constraints) {
    if (!KNOWN_TYPES.has(constraint.type) || types.has(constraint.type)) return 'type_repeated';
    types.add(constraint.type);
    const n = countWords(constraint.text);
    if (n < options.constraintWords.minWords || n > options.constraintWords.maxWords)
      return 'constraint_invalid';
  }
  return undefined;
}
