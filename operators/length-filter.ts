import { drop, emit, type Outcome, type RecordOperator } from '../pipeline/operator.js';

export interface LengthFilterOptions {
  /** Fewest whitespace-separated words a document may have (inclusive). */
  readonly minWords: number;
  /** Most whitespace-separated words a document may have (inclusive). */
  readonly maxWords: number;
}

/** Counts whitespace-separated words without allocating the split array. */
export function countWords(text: string): number {
  let words = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // ASCII whitespace plus NBSP and the Unicode spaces crawls are full of.
    const space = c <= 32 || c === 0xa0 || (c >= 0x2000 && c <= 0x200b) || c === 0x3000 || c === 0x2028;
    if (space) inWord = false;
    else if (!inWord) {
      inWord = true;
      words++;
    }
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
