/**
 * How many constraints an instruction states: the complexity measure `air score` reports beside the distinct
 * types. Distinct types cannot rank instructions that stack constraints of one type (five style demands are one
 * type), and the typed rules miss requirements phrased without a cue word ("Additionally, analyze its impact",
 * "ensure the note sounds Victorian", "I have a small child at home"). So the instruction is cut into clauses,
 * and each clause counts once per constraint type tagged in it, or once if it states an untyped requirement:
 * an additive connective, a requirement verb or modal, a demand on "your response", a premise about the
 * asker's situation, or an item of a list of conditions. Questions and the plain task clause count 0.
 */
import { tagConstraints, type ConstraintTag, type ConstraintType } from './constraint-tagger.js';

/** One clause of an instruction that states a constraint. */
export interface ConstraintClause {
  /** instruction.slice(start, end) is the clause. */
  readonly start: number;
  readonly end: number;
  /** Types tagged inside the clause (each counts as a constraint). */
  readonly types: readonly ConstraintType[];
  /** Why a clause without a typed tag counts, when it does. */
  readonly requirement?: RequirementCue;
}

export type RequirementCue = 'additive' | 'requirement' | 'answer' | 'premise' | 'condition' | 'command';

// Abbreviations whose period does not end a sentence ("Dr. Seuss", "e.g. this", "J. R. R. Tolkien").
const ABBREVIATION =
  /(?:\b(?:mr|mrs|ms|dr|st|sr|jr|prof|vs|etc|e\.g|i\.e|no|fig|approx|[a-z])|(?:^|[\s:;(])\d{1,2})\.$/i;

/** Clause breaks inside a sentence: semicolons, colons, commas and dashes followed by a space. */
const CLAUSE_BREAK = /[;:,]\s+|\s+[-–—]\s+/g;

/** An enumerated item opens here: "1. ", "2) ", "(3) " after a space, colon or start. */
const ITEM = /(?:^|(?<=[\s:;]))\(?\d{1,2}[.)](?=\s)/g;

/** A list of conditions is introduced by these words just before its first item. */
const CONDITION_LEAD =
  /\b(?:conditions?|criteria|requirements?|constraints?|rules?|features?|specifications?|following|that|which|who)\s*:?\s*$/i;

/** A colon that opens conditions listed inline and separated by semicolons. */
const INLINE_CONDITIONS =
  /\b(?:conditions?|criteria|requirements?|constraints?|rules?|(?:that|which|who)\s+(?:are|is|satisfy|meet|must|should|have)(?:\s+(?:all|the|these|both))?)\s*:\s*/i;

/**
 * A sentence that starts like an imperative: a verb, then the kind of word that follows a verb ("Explain the",
 * "Add a", "Limit your", "Please respond with"). Statements start with a subject ("The falcon is", "Germany
 * imported"), which this does not match unless the subject's verb is followed by such a word.
 */
const IMPERATIVE_START =
  /^\W*(?:(?:please|now|then|also|finally|lastly|next|explicitly|briefly|carefully|kindly)\s+)?(?!(?:the|a|an|this|that|these|those|it|its|there|here|he|she|they|we|i|you|my|our|his|her|their|what|who|whom|which|when|where|why|how|if|as|in|on|at|for|to|from|by|of|and|but|or|so|after|before|while|since|although|though|because|once|each|every|all|some|many|most|one|two|three)\b)[a-z]+\s+(?:the|a|an|your|it|this|these|those|them|me|us|one|two|three|some|any|each|every|all|how|what|why|whether|between|more|only|up|out|on|with|to|yourself|thy|thine)\b/i;

const CUES: ReadonlyArray<readonly [RequirementCue, RegExp]> = [
  // "Additionally, ...", "Moreover", "while also", "as well as": one more demand stacked on the task.
  [
    'additive',
    /^\W*(?:additionally|furthermore|moreover|in\s+addition|also|besides|lastly|finally|plus|on\s+top\s+of\s+(?:this|that|all\s+this)|as\s+a\s+(?:final|further|last)\s+\w+|for\s+an?\s+(?:added|extra|further|final)\s+\w+|to\s+(?:further|add)\b)|\b(?:also|another|additional)\b|\bas\s+well\s+as\b|\balong\s+with\b|\bin\s+addition\s+to\b|\bnot\s+only\b/i,
  ],
  // Requirement verbs and modals: "ensure", "make sure", "it is crucial to", "the note should".
  [
    'requirement',
    /\b(?:ensure|ensuring|make\s+sure|be\s+sure|take\s+care\s+to|remember\s+to|strive\s+to|aim\s+(?:for|to)|it\s+is\s+(?:crucial|important|essential|necessary|vital|imperative|key)|(?:^\W*|\b(?:you|it|your\s+[\w-]+|the\s+[\w-]+(?:\s+[\w-]+)?)\s+)(?:must|should|shall|needs?\s+to|has\s+to|ought\s+to)|only\s+(?:output|return|respond|answer|reply|use|include|list|give|mention))\b/i,
  ],
  // A demand on the answer itself: "infuse your response with", "frame your reply".
  [
    'answer',
    /\b(?:your|thy|thine)\s+(?:response|answer|reply|output|explanation|essay|narrative|prose|writing|discourse|words|description|summary|analysis|argument|composition|message|tale|advice|insights?|musings|reflection|statements?|story)\b|\bthe\s+(?:response|answer|reply|output)\b/i,
  ],
  // The asker's situation, stated as fact: "I have a small child at home", "My CUDA version is 11.5".
  [
    'premise',
    /^\W*(?:(?:I|we)\s+(?:am|was|were|are|have|had|live|work|own|use|run|recently|just|currently|also)\b|(?:I'm|I've|we're|we've|I'd|we'd)\b|(?:my|our)\s+(?:[\w-]+\s+){1,4}?(?:is|are|was|were|has|have)\b|(?:if|given|since|after|assuming|suppose|considering)\s)/i,
  ],
];

interface Span {
  readonly start: number;
  readonly end: number;
}

interface Clause extends Span {
  /** The sentence is a question: its modals ask, they do not demand. */
  readonly question: boolean;
  /** The clause is an item of a list of conditions. */
  readonly item: boolean;
  /** The clause opens a sentence that starts like an imperative, after the task sentence. */
  readonly command: boolean;
}

/** Where the items of lists of conditions start: runs numbered 1, 2, 3... whose item 1 follows a lead. */
function conditionItems(text: string): Set<number> {
  const items = new Set<number>();
  let expected = 0;
  for (const m of text.matchAll(ITEM)) {
    const n = Number(/\d+/.exec(m[0])![0]);
    if (n === 1) {
      expected = CONDITION_LEAD.test(text.slice(Math.max(0, m.index - 40), m.index)) ? 1 : 0;
    }
    if (expected === 0 || n !== expected) {
      expected = 0;
      continue;
    }
    items.add(m.index);
    expected++;
  }
  return items;
}

function sentencesOf(text: string, items: ReadonlySet<number>): Span[] {
  const sentences: Span[] = [];
  let from = 0;
  for (const match of text.matchAll(/[.!?]+(?=\s|$)|\n+/g)) {
    const end = match.index + match[0].length;
    if (match[0] === '.' && ABBREVIATION.test(text.slice(Math.max(from, match.index - 6), end))) continue;
    // A line that ends in a colon or semicolon goes on in the next one (a list laid out line by line).
    if (match[0].startsWith('\n') && /[:;,]\s*$/.test(text.slice(from, match.index))) continue;
    sentences.push({ start: from, end });
    from = end;
  }
  if (from < text.length) sentences.push({ start: from, end: text.length });
  // A list item also starts a sentence of its own.
  return sentences.flatMap((s) => {
    const cuts = [...items].filter((i) => i > s.start && i < s.end);
    const bounds = [s.start, ...cuts, s.end];
    return bounds.slice(0, -1).map((start, i) => ({ start, end: bounds[i + 1]! }));
  });
}

/** Sentences, then clauses within them. */
function clausesOf(text: string): Clause[] {
  const items = conditionItems(text);
  const clauses: Clause[] = [];
  let taskSeen = false;
  for (const sentence of sentencesOf(text, items)) {
    const body = text.slice(sentence.start, sentence.end);
    const question = /\?\s*$/.test(body);
    const imperative = IMPERATIVE_START.test(body);
    const command = imperative && taskSeen && !question;
    if (question || imperative) taskSeen = true;
    const cuts = new Set<number>([0, body.length]);
    for (const m of body.matchAll(CLAUSE_BREAK)) cuts.add(m.index + m[0].length);
    // "... three more foods that are: not cheese; not from Europe": conditions listed without numbers.
    const lead = INLINE_CONDITIONS.exec(body);
    const listFrom = lead !== null && body.indexOf(';', lead.index) > 0 ? lead.index + lead[0].length : -1;
    const sorted = [...cuts].sort((a, b) => a - b);
    for (let i = 0; i + 1 < sorted.length; i++) {
      const start = sentence.start + sorted[i]!;
      const end = sentence.start + sorted[i + 1]!;
      if (text.slice(start, end).trim() === '') continue;
      clauses.push({
        start,
        end,
        question,
        item: (i === 0 && items.has(sentence.start)) || (listFrom >= 0 && sorted[i]! >= listFrom),
        command: i === 0 && command,
      });
    }
  }
  return clauses;
}

/**
 * Joins pieces that do not stand alone: a lead-in of three words or fewer ("Additionally," "In your response,")
 * opens the clause after it, and a participle after a comma ("..., evoking the language of the time") goes on
 * the demand before it, so one demand split by commas counts once.
 */
function joinFragments(text: string, clauses: readonly Clause[]): Clause[] {
  const out: Clause[] = [];
  let pending: Clause | undefined;
  for (const clause of clauses) {
    const current: Clause =
      pending === undefined
        ? clause
        : { ...clause, start: pending.start, command: pending.command, item: pending.item };
    pending = undefined;
    const body = text.slice(current.start, current.end);
    const words = body.trim().split(/\s+/);
    const previous = out[out.length - 1];
    if (words.length <= 3 && !current.item && !/[.!?]\s*$/.test(body)) {
      pending = current;
    } else if (
      previous !== undefined &&
      !current.item &&
      /^\W*\w+ing\b/.test(words[0] ?? '') &&
      /,\s*$/.test(text.slice(previous.start, previous.end))
    ) {
      out[out.length - 1] = { ...previous, end: current.end };
    } else {
      out.push(current);
    }
  }
  if (pending !== undefined) out.push(pending);
  return out;
}

/** The clauses of an instruction that state constraints, with the typed tags they hold. */
export function constraintClauses(
  instruction: string,
  tags: readonly ConstraintTag[] = tagConstraints(instruction),
): ConstraintClause[] {
  const out: ConstraintClause[] = [];
  for (const clause of joinFragments(instruction, clausesOf(instruction))) {
    const types = [
      ...new Set(tags.filter((t) => t.start >= clause.start && t.start < clause.end).map((t) => t.type)),
    ];
    if (types.length > 0) {
      out.push({ start: clause.start, end: clause.end, types });
      continue;
    }
    const text = instruction.slice(clause.start, clause.end);
    const requirement: RequirementCue | undefined = clause.item
      ? 'condition'
      : clause.command
        ? 'command'
        : CUES.find(([cue, pattern]) => !(clause.question && cue !== 'answer') && pattern.test(text))?.[0];
    if (requirement !== undefined) out.push({ start: clause.start, end: clause.end, types, requirement });
  }
  return out;
}

/** The number of constraints an instruction states (see the module comment); 0 for a plain task. */
export function countConstraints(instruction: string, tags?: readonly ConstraintTag[]): number {
  let n = 0;
  for (const clause of constraintClauses(instruction, tags)) n += Math.max(clause.types.length, 1);
  return n;
}
