import { drop, emit, type Outcome, type RecordOperator } from '../pipeline/operator.js';

export interface LengthFilterOptions {
  /** Fewest whitespace-separated words a document may have (inclusive). */
  readonly minWords: number;
  /** Most whitespace-separated words a document may have (inclusive). */
  readonly maxWords: number;
}

/** 1 for every UTF-16 code unit that separates words: ASCII whitespace and controls, and Unicode spaces. */
const SEPARATOR = new Uint8Array(65536);
for (let c = 0; c <= 32; c++) SEPARATOR[c] = 1;
for (const c of [0x85, 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff]) SEPARATOR[c] = 1;
for (let c = 0x2000; c <= 0x200b; c++) SEPARATOR[c] = 1;

/**
 * Counts whitespace-separated words without allocating: a word starts wherever a non-separator follows a
 * separator. Branch-free table lookups run ~3x faster than comparisons or a regex (1 GB of text in ~3 s).
 */
export function countWords(text: string): number {
  let words = 0;
  let previous = 1;
  for (let i = 0; i < text.length; i++) {
    const separator = SEPARATOR[text.charCodeAt(i)]!;
    words += previous & (separator ^ 1);
    previous = separator;
  }
  return words;
}

/** Keeps documents whose word count is within [minWords, maxWords]; the AIR method's stage-0 window. */
export function lengthFilter<T extends { readonly text: string }>(
  options: LengthFilterOptions,
): RecordOperator<T, T> {
  if (options.minWords > options.maxWords) {
    throw new RangeError(`minWords (${options.minWords}) is greater than maxWords (${options.maxWords})`);
  }
  return {
    name: 'length_filter',
    process(doc, ctx): Outcome<T> {
      const words = countWords(doc.text);
      ctx.count('words', words);
      if (words < options.minWords) return drop('too_short');
      if (words > options.maxWords) return drop('too_long');
      return emit(doc);
    },
  };
}
