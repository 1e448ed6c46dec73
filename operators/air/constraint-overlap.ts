/**
 * A model-free duplicate check for constraints. The judge already sees the accepted constraints (it is shown
 * the refined instruction) and may use each type once, so what a separate LLM duplicate call still catches is
 * mostly a restatement in the same words; the share of content words two constraints have in common finds
 * that without a call. The reference code needs its LLM check because its judge never sees what it accepted.
 */

/** Words every constraint is made of: they say that something is required (or forbidden: see isNegated), not what. */
const FUNCTION_WORDS = new Set(
  (
    'a an the and or but of to in on at by for with from into onto as than then that this these those it its ' +
    'is are be been being was were do does did not no nor never any all each every some such only also so very more most ' +
    'less least should must shall will would can could may might use using used make sure ensure answer answers ' +
    'response responses reply output text write written include includes including provide provided give ' +
    'keep your you their them they he she we our us which what who whom whose where when how why ' +
    'there here about over under between within without per one two three'
  ).split(' '),
);

/** Lower-cased content words, a plural "s" dropped, so "examples" and "example" meet. */
export function contentWords(text: string): Set<string> {
  const words = new Set<string>();
  for (const match of text.toLowerCase().matchAll(/[\p{L}\p{N}]+/gu)) {
    let word = match[0];
    if (FUNCTION_WORDS.has(word)) continue;
    if (word.length > 3 && word.endsWith('s') && !word.endsWith('ss')) word = word.slice(0, -1);
    words.add(word);
  }
  return words;
}

/** |A ∩ B| / min(|A|, |B|): 1 when one constraint's content words all appear in the other. */
export function overlapCoefficient(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  if (small.size === 0) return 0;
  let shared = 0;
  for (const word of small) if (large.has(word)) shared++;
  return shared / small.size;
}

/** Words that turn a requirement into its opposite: "mention X" and "do not mention X" share every other word. */
const NEGATION =
  /\b(not|no|never|nor|without|avoid|avoids|avoiding|exclude|excluding|omit|omitting)\b|n['’]t\b/i;

/** Whether the constraint forbids rather than requires. */
export function isNegated(text: string): boolean {
  return NEGATION.test(text);
}

/**
 * The index of the first accepted constraint that `proposal` restates (content-word overlap at or above
 * `threshold`, and the same polarity: a prohibition never restates a requirement), or -1 when it asks for
 * something new.
 */
export function restatedConstraint(
  proposal: string,
  accepted: readonly { readonly text: string }[],
  threshold: number,
): number {
  if (!(threshold > 0 && threshold <= 1))
    throw new RangeError(`threshold must be in (0, 1], got ${threshold}`);
  const words = contentWords(proposal);
  const negated = isNegated(proposal);
  return accepted.findIndex(
    (c) => isNegated(c.text) === negated && overlapCoefficient(words, contentWords(c.text)) >= threshold,
  );
}
