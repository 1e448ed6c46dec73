import { z } from 'zod';
import { DEFAULT_CONSTRAINT_RULES, type ConstraintRules } from './replies.js';

/**
 * The refine operator's options, defined once: fields, defaults and the rules between fields. A run config
 * takes this schema as `air.refine` unchanged, so every key here is a config key there (same names, same
 * order: the config fingerprint is made of them).
 */
const fields = z.strictObject({
  /** Most judge rounds per document (method: 5). */
  maxIterations: z.number().int().positive().default(5),
  /** Grade the student's revised answer against each new constraint (0-3). */
  studentCheck: z.boolean().default(true),
  /**
   * Keep a constraint only where the student falls short of it even when asked (check < gateScore): the
   * paper's intent, which the reference code computes but never uses. Needs `studentCheck`.
   */
  gateOnStudentCheck: z.boolean().default(true),
  /** The check score at or above which the student is taken to follow a constraint already (0-3). */
  gateScore: z.number().int().min(0).max(3).default(3),
  /** Show the judge the instruction with the constraints so far (the reference shows the original one). */
  judgeSeesRefined: z.boolean().default(true),
  /**
   * Ask round k's 0-3 check in round k+1's judge call, which reads the same revised answer anyway; only a
   * constraint with no judge call after it (the last round) gets a check call of its own. The reference
   * makes one check call per round.
   */
  checkWithNextJudge: z.boolean().default(true),
  /**
   * `lexical`: a proposal whose content words mostly repeat an accepted constraint's is a duplicate (no
   * call). `llm`: a duplicate-check call in every round after the first acceptance, as the reference does.
   */
  duplicateCheck: z.enum(['lexical', 'llm']).default('lexical'),
  /** `lexical` only: the share of the shorter constraint's content words at which two are the same (0-1). */
  duplicateOverlap: z.number().gt(0).max(1).default(0.6),
  /** A judge's constraint must have this many words or more... */
  constraintMinWords: z.number().int().nonnegative().default(DEFAULT_CONSTRAINT_RULES.minWords),
  /** ...and this many or fewer. */
  constraintMaxWords: z.number().int().positive().default(DEFAULT_CONSTRAINT_RULES.maxWords),
});

type Key = keyof z.output<typeof fields>;

interface Rule {
  /** The key the message is filed under. */
  readonly at: Key;
  readonly broken: (options: z.output<typeof fields>) => boolean;
  /** Names keys as `{key}`, so each reader sees them spelled its own way (see `ruleMessage`). */
  readonly says: string;
}

const RULES: readonly Rule[] = [
  {
    at: 'gateOnStudentCheck',
    broken: (o) => o.gateOnStudentCheck && !o.studentCheck,
    says: '{gateOnStudentCheck} needs {studentCheck}',
  },
  {
    // The word check stands in for the LLM one because the judge sees (and avoids) the accepted constraints.
    at: 'judgeSeesRefined',
    broken: (o) => o.duplicateCheck === 'lexical' && !o.judgeSeesRefined,
    says:
      '{judgeSeesRefined}: false needs {duplicateCheck}: llm (a judge that does not see the accepted ' +
      'constraints repeats them in other words, which the word check misses: it needs {judgeSeesRefined})',
  },
];

export const refineOptionsSchema = fields.superRefine((options, ctx) => {
  for (const rule of RULES) {
    if (!rule.broken(options)) continue;
    const message = spellKeys(rule.says, (key) => key);
    ctx.addIssue({ code: 'custom', path: [rule.at], message, params: { says: rule.says } });
  }
});

export type RefineOptions = z.output<typeof refineOptionsSchema>;

/** What the operator takes: its options, and the documents in their loops at once (a run's, not a config key). */
export type RefineOperatorOptions = RefineOptions & { readonly concurrency: number };

/**
 * The message of an issue raised by a rule between fields, with each key it names spelled by `spell` (a run
 * config spells the full path); undefined for any other issue.
 */
export function ruleMessage(issue: z.core.$ZodIssue, spell: (key: string) => string): string | undefined {
  if (issue.code !== 'custom') return undefined;
  const says: unknown = issue.params?.['says'];
  return typeof says === 'string' ? spellKeys(says, spell) : undefined;
}

/** Validated options (RangeError naming every bad key otherwise), for callers that build them in code. */
export function checkRefineOptions(options: RefineOptions): RefineOptions {
  const result = refineOptionsSchema.safeParse(options);
  if (result.success) return result.data;
  const messages = result.error.issues.map(
    (issue) => ruleMessage(issue, (key) => key) ?? `${issue.path.join('.')}: ${issue.message}`,
  );
  throw new RangeError(`refine: ${messages.join('; ')}`);
}

/** The word limits of a judge's constraint, as the reply readers take them. */
export function constraintRules(options: RefineOptions): ConstraintRules {
  return { minWords: options.constraintMinWords, maxWords: options.constraintMaxWords };
}

function spellKeys(says: string, spell: (key: string) => string): string {
  return says.replace(/\{(\w+)\}/g, (_, key: string) => spell(key));
}
