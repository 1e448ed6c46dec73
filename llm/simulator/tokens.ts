import { fmix32, fnv1a32 } from '../../pipeline/hash.js';

/**
 * The simulator's tokenizer: close to a real BPE tokenizer's counts for English without its vocabulary (none can be
 * downloaded here). Text is cut into pieces as BPE pre-tokenizers cut it (a word with its leading space, up to three
 * digits, a run of punctuation, a run of whitespace); each piece then makes as many tokens as a piece of its kind
 * and length makes on average in cl100k_base (the GPT-4 tokenizer, whose vocabulary Llama 3's extends), fitted on
 * 1,000 documents of the bundled web samples. A piece whose mean is fractional (a 9-letter word: 1.45) gets the
 * floor or the ceiling by a hash of the piece, so the same text always gives the same tokens and totals stay
 * unbiased. Measured on the other 1,000 (bench/tokenizer/): within a few percent of cl100k_base over English
 * documents (see bench/RESULTS-prefix.md for the figures).
 *
 * Tokens are the piece's characters split evenly, so identical text gives identical tokens and a text's tokens
 * are a prefix of a longer text's tokens up to the piece where they first differ, as with BPE: what a prefix cache
 * needs.
 */
const PIECE =
  /'(?:[sStTmMdD]|re|RE|ve|VE|ll|LL)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/**
 * Frequent English words: one token each in every large vocabulary, with or without their leading space. Left to the
 * length tables, a hash would give all of a frequent word's occurrences a second token at once.
 */
const COMMON = new Set(
  `
  the to and a of in is for that you on with i be it are as your this or at have by from will can was an not
  has all they but do their one more which we my about out up our were also who so been time use like there
  new some them when me make if what he would may used people other his her get just into any well had only
  work should most many than years over first these see how very after need through set help us per good two
  now could much site go information where best she take before number back know year think home such day
  then great being even life because made own same using business find come around really world line its way
  want while those both each between under three still here does did during without long since last off
  every must another part high right small large place end few why down free old left less full family ask
  show state water keep give let point look school city name open read today man men women children thing
  things something nothing always never often however within week month
`.split(/\s+/),
);

/**
 * Mean tokens of a piece by its kind and length in characters (index; a letter run's leading space or character
 * not counted), fitted against cl100k_base on English documents of the bundled
 * samples (`other` and `symbol` on all of them). `lowerP`/`upperP`: a letter run glued to one
 * leading character other than a space ("(word", ".com").
 */
const MEANS = {
  lower: [1, 1, 1, 1.02, 1.02, 1.05, 1.09, 1.1, 1.14, 1.21, 1.27, 1.3, 1.4, 1.44, 1.79, 2.01],
  upper: [1, 1, 1.04, 1.27, 1.29, 1.31, 1.4, 1.45, 1.57, 1.84, 1.73, 2.02, 2.19, 2.26, 2.47, 3.53],
  lowerP: [1, 1.01, 1.05, 1.26, 1.39, 1.53, 1.76, 1.78, 2, 2.38, 2.54, 2.69, 2.95, 3.32, 4.53, 3.6],
  upperP: [1, 1.04, 1.95, 2.19, 2.05, 2.23, 2.42, 2.42, 2.72, 3.21, 3.19, 3.57, 3.77, 3.29, 3, 3],
  /** Letters outside ASCII (accented Latin, other scripts): byte-level BPE spends more on them. */
  other: [1, 2.87, 3.76, 3.75, 3.73, 3.64, 3.84, 4.07, 4.6, 4.83, 5.3, 5.79, 6.39, 7.1, 8.99, 10.99],
  digits: [1, 1, 1, 1],
  punct: [1, 1, 1.04, 1.36, 1.73, 1.98, 2.47],
  symbol: [1, 1.45, 3.71, 5.61, 6.64, 7.37, 9.67],
  newline: [1, 1, 1, 1.73, 2.4, 2.89, 3.67],
  space: [1, 1, 1, 1, 2, 1],
} as const satisfies Record<string, readonly number[]>;

type Kind = keyof typeof MEANS;

/** Tokens per character past the end of a kind's table. */
const PER_CHAR_BEYOND: Readonly<Record<Kind, number>> = {
  lower: 0.2,
  upper: 0.2,
  lowerP: 0.27,
  upperP: 0.32,
  other: 0.93,
  digits: 0.34,
  punct: 0.3,
  symbol: 1.3,
  newline: 0.4,
  space: 0.15,
};

const LETTER_START = /^\p{L}/u;
// eslint-disable-next-line no-control-regex
const ASCII = /^[\x00-\x7f]*$/;

/** How many tokens a piece makes: its kind's mean for its length, rounded up or down by the piece's hash. */
function tokensOf(piece: string): number {
  let kind: Kind;
  let length = piece.length;
  if (/\p{L}$/u.test(piece)) {
    const lead = LETTER_START.test(piece) || piece.charCodeAt(0) === 0x27 ? '' : piece[0]!;
    const core = piece.slice(lead.length);
    if (!ASCII.test(core)) kind = 'other';
    else if (COMMON.has(core.toLowerCase()) && (lead === '' || lead === ' ')) return 1;
    else {
      const upper = core.charCodeAt(0) >= 0x41 && core.charCodeAt(0) <= 0x5a;
      kind = lead === '' || lead === ' ' ? (upper ? 'upper' : 'lower') : upper ? 'upperP' : 'lowerP';
    }
    length = core.length;
  } else if (/^\p{N}/u.test(piece)) kind = 'digits';
  else if (/^\s+$/.test(piece)) kind = piece.includes('\n') ? 'newline' : 'space';
  else {
    const core = piece.trim();
    kind = ASCII.test(core) ? 'punct' : 'symbol';
    length = core.length;
  }
  const table: readonly number[] = MEANS[kind];
  const mean = length < table.length ? table[length]! : length * PER_CHAR_BEYOND[kind];
  const whole = Math.floor(mean);
  const fraction = mean - whole;
  const draw = fraction === 0 ? 1 : fmix32(fnv1a32(piece)) / 4_294_967_296;
  return Math.max(1, whole + (draw < fraction ? 1 : 0));
}

/** The number of tokens of `text`. */
export function countTokens(text: string): number {
  let total = 0;
  for (const match of text.matchAll(PIECE)) total += tokensOf(match[0]);
  return total;
}

/** The tokens of `text`, each as the characters it covers (a piece split evenly into its tokens). */
export function tokenize(text: string): string[] {
  const tokens: string[] = [];
  for (const match of text.matchAll(PIECE)) {
    const piece = match[0];
    const count = tokensOf(piece);
    if (count === 1) {
      tokens.push(piece);
      continue;
    }
    // A piece can make more tokens than it has characters (a rare script's bytes): those extra tokens are empty.
    const n = Math.min(count, piece.length);
    for (let i = 0; i < n; i += 1) {
      tokens.push(piece.slice(Math.floor((i * piece.length) / n), Math.floor(((i + 1) * piece.length) / n)));
    }
    for (let i = n; i < count; i += 1) tokens.push('');
  }
  return tokens;
}

/**
 * A chat prompt as the server's chat template lays it out (Llama 3's): a begin token, then per message a header
 * (start, role, end, blank line) and its content and an end token, then the assistant's header. Template tokens
 * are counted, as servers count them in `usage.prompt_tokens`.
 */
export function chatTokens(
  messages: readonly { readonly role: string; readonly content: string }[],
): string[] {
  const tokens = ['<|begin_of_text|>'];
  for (const message of messages) {
    tokens.push('<|start_header_id|>', message.role, '<|end_header_id|>', '\n\n');
    for (const token of tokenize(message.content)) tokens.push(token);
    tokens.push('<|eot_id|>');
  }
  tokens.push('<|start_header_id|>', 'assistant', '<|end_header_id|>', '\n\n');
  return tokens;
}

/** Template tokens of a chat prompt beyond its contents' own: see `chatTokens`. */
export const TEMPLATE_TOKENS = { perPrompt: 5, perMessage: 5 } as const;

export function countChatTokens(
  messages: readonly { readonly role: string; readonly content: string }[],
): number {
  let total = TEMPLATE_TOKENS.perPrompt;
  for (const message of messages) total += TEMPLATE_TOKENS.perMessage + countTokens(message.content);
  return total;
}
