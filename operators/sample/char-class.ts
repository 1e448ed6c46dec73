/**
 * Unicode character classes by UTF-16 code unit, computed once per process so that the hot loops of the quality
 * filters and the hashing vectorizer are table lookups instead of a regular expression per character.
 */

/** Anything that is not a letter, mark, digit or whitespace (punctuation, symbols, controls, emoji). */
export const SYMBOL = 0;
/** Letters (\p{L}), combining marks (\p{M}, part of letters in many scripts) and numbers (\p{N}). */
export const WORD = 1;
/** Whitespace as JavaScript's `\s` defines it (ASCII spaces and controls \t\n\v\f\r, \p{Zs}, U+2028/9, U+FEFF). */
export const SPACE = 2;
/** A UTF-16 surrogate: the class belongs to the code point the pair encodes (see `codePointClass`). */
export const SURROGATE = 3;

const WORD_PATTERN = /^[\p{L}\p{M}\p{N}]$/u;
const SPACE_PATTERN = /^\s$/u;

function classify(char: string): number {
  if (WORD_PATTERN.test(char)) return WORD;
  if (SPACE_PATTERN.test(char)) return SPACE;
  return SYMBOL;
}

/** CHAR_CLASS[code unit] is SYMBOL, WORD, SPACE or SURROGATE (65,536 regex tests at load, ~10 ms). */
export const CHAR_CLASS: Uint8Array = (() => {
  const table = new Uint8Array(65536);
  for (let c = 0; c < 65536; c++) {
    table[c] = c >= 0xd800 && c <= 0xdfff ? SURROGATE : classify(String.fromCharCode(c));
  }
  return table;
})();

/**
 * LOWER[code unit] is its lower case when that is one code unit (U+0130 İ, whose lower case is two, maps to
 * itself); letters outside the BMP keep their case.
 */
export const LOWER: Uint16Array = (() => {
  const table = new Uint16Array(65536);
  for (let c = 0; c < 65536; c++) {
    const lower = c >= 0xd800 && c <= 0xdfff ? '' : String.fromCharCode(c).toLowerCase();
    table[c] = lower.length === 1 ? lower.charCodeAt(0) : c;
  }
  return table;
})();

// Code points beyond the BMP are rare in web text (emoji, CJK extension B, math letters): classified on first
// sight and remembered.
const astral = new Map<number, number>();

/** The class of a code point above U+FFFF. */
export function astralClass(codePoint: number): number {
  let cls = astral.get(codePoint);
  if (cls === undefined) {
    cls = classify(String.fromCodePoint(codePoint));
    astral.set(codePoint, cls);
  }
  return cls;
}

/**
 * The code point at `i` when text[i] is a high surrogate followed by a low one, else -1 (a lone surrogate,
 * which callers count as a symbol).
 */
export function surrogatePairAt(text: string, i: number): number {
  const high = text.charCodeAt(i);
  if (high > 0xdbff || i + 1 >= text.length) return -1;
  const low = text.charCodeAt(i + 1);
  if (low < 0xdc00 || low > 0xdfff) return -1;
  return ((high - 0xd800) << 10) + (low - 0xdc00) + 0x10000;
}
