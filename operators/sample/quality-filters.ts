import { drop, emit, type Outcome, type RecordOperator } from '../../pipeline/operator.js';
import { astralClass, CHAR_CLASS, SPACE, SURROGATE, SYMBOL, surrogatePairAt } from './char-class.js';

/**
 * The AIR method's stage-0 quality rules besides the length window: a symbol-ratio filter and a redundancy
 * filter (duplicated lines, long runs of one character). Each rule can be switched off; defaults are the method's.
 */
export interface QualityFilterOptions {
  readonly symbolRatio: {
    /** Default true. */
    readonly enabled: boolean;
    /**
     * Highest share of characters (code points, whitespace included) that may be neither letters, marks,
     * digits nor whitespace. Default 0.5: a document with more than half symbols is dropped.
     */
    readonly max: number;
  };
  readonly duplicateLines: {
    /** Default true. */
    readonly enabled: boolean;
    /**
     * Highest share of non-empty lines that may repeat an earlier line of the same document (compared after
     * trimming whitespace at both ends). Default 0.1.
     */
    readonly maxFraction: number;
  };
  readonly charRun: {
    /** Default true. */
    readonly enabled: boolean;
    /** Longest run of one repeated character allowed. Default 10: a character repeated 11 times drops it. */
    readonly maxRun: number;
    /**
     * Whether runs of whitespace count (indentation, blank-line padding). Default true, as the method states
     * the rule for any character; false exempts whitespace runs.
     */
    readonly includeWhitespace: boolean;
  };
}

/** The drop reasons, one per rule. */
export type QualityRule = 'symbol_ratio' | 'duplicate_lines' | 'char_run';

/** What the single pass over a text measures. */
export interface CharacterMeasures {
  /** Code points (a surrogate pair is one). */
  readonly chars: number;
  /** Code points that are neither letters, marks, digits nor whitespace (a lone surrogate is one). */
  readonly symbols: number;
  /** Longest run of one repeated code point. */
  readonly longestRun: number;
  /** Longest run of one repeated code point that is not whitespace. */
  readonly longestNonSpaceRun: number;
}

/**
 * Counts characters, symbols and the longest runs in one pass of table lookups; code points above the BMP are
 * decoded from their surrogate pair so that an emoji counts (and repeats) as one character.
 */
export function measureCharacters(text: string): CharacterMeasures {
  let chars = 0;
  let symbols = 0;
  let previous = -1;
  let run = 0;
  let previousIsSpace = false;
  let longestRun = 0;
  let longestNonSpaceRun = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    let cp = text.charCodeAt(i);
    let cls = CHAR_CLASS[cp]!;
    if (cls === SURROGATE) {
      const pair = surrogatePairAt(text, i);
      if (pair < 0) {
        cls = SYMBOL;
      } else {
        cp = pair;
        cls = astralClass(pair);
        i++;
      }
    }
    chars++;
    if (cls === SYMBOL) symbols++;
    if (cp === previous) {
      run++;
    } else {
      if (run > longestRun) longestRun = run;
      if (!previousIsSpace && run > longestNonSpaceRun) longestNonSpaceRun = run;
      previous = cp;
      previousIsSpace = cls === SPACE;
      run = 1;
    }
  }
  if (run > longestRun) longestRun = run;
  if (!previousIsSpace && run > longestNonSpaceRun) longestNonSpaceRun = run;
  return { chars, symbols, longestRun, longestNonSpaceRun };
}

/** Non-empty lines (after trimming whitespace), and how many of them repeat an earlier one. */
export function countDuplicateLines(text: string): { lines: number; duplicates: number } {
  const seen = new Set<string>();
  let lines = 0;
  let duplicates = 0;
  let start = 0;
  const n = text.length;
  while (start <= n) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = n;
    let a = start;
    let b = end;
    while (a < b && CHAR_CLASS[text.charCodeAt(a)] === SPACE) a++;
    while (b > a && CHAR_CLASS[text.charCodeAt(b - 1)] === SPACE) b--;
    if (b > a) {
      lines++;
      // Substrings are slices of the text in V8 (no copy); Set lookups hash them once.
      const line = text.slice(a, b);
      if (seen.has(line)) duplicates++;
      else seen.add(line);
    }
    start = end + 1;
  }
  return { lines, duplicates };
}

function checkRange(name: string, value: number, min: number, max: number): void {
  if (!(value >= min && value <= max))
    throw new RangeError(`${name} must be in [${min}, ${max}], got ${value}`);
}

/** The first rule the text breaks, cheapest checks first, or undefined when it passes every enabled rule. */
export function qualityIssue(text: string, options: QualityFilterOptions): QualityRule | undefined {
  const { symbolRatio, duplicateLines, charRun } = options;
  if (symbolRatio.enabled || charRun.enabled) {
    const m = measureCharacters(text);
    // A quotient of integers is correctly rounded, so 5/10 > 0.5 is false exactly as in decimal.
    if (symbolRatio.enabled && m.chars > 0 && m.symbols / m.chars > symbolRatio.max) return 'symbol_ratio';
    const longest = charRun.includeWhitespace ? m.longestRun : m.longestNonSpaceRun;
    if (charRun.enabled && longest > charRun.maxRun) return 'char_run';
  }
  if (duplicateLines.enabled) {
    const { lines, duplicates } = countDuplicateLines(text);
    if (lines > 0 && duplicates / lines > duplicateLines.maxFraction) return 'duplicate_lines';
  }
  return undefined;
}

/** Drops documents that break a quality rule, with the rule as the reason (`quality_filter:symbol_ratio`). */
export function qualityFilter<T extends { readonly text: string }>(
  options: QualityFilterOptions,
): RecordOperator<T, T> {
  checkRange('symbolRatio.max', options.symbolRatio.max, 0, 1);
  checkRange('duplicateLines.maxFraction', options.duplicateLines.maxFraction, 0, 1);
  checkRange('charRun.maxRun', options.charRun.maxRun, 1, Number.MAX_SAFE_INTEGER);
  return {
    name: 'quality_filter',
    process(doc): Outcome<T> {
      const issue = qualityIssue(doc.text, options);
      return issue === undefined ? emit(doc) : drop(issue);
    },
  };
}
