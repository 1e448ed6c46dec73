import { drop, emit, type Outcome, type RecordOperator } from '../../pipeline/operator.js';
import { errorKind } from '../../pipeline/errors.js';
import { CONSTRAINT_TYPES, type ConstraintType } from '../constraint-tagger.js';
import { restatedConstraint } from './constraint-overlap.js';
import {
  checkRefineOptions,
  constraintRules,
  refineOptionsSchema,
  type RefineOperatorOptions,
  type RefineOptions,
} from './refine-options.js';
import {
  CHECK_SCHEMA,
  DUPLICATE_SCHEMA,
  judgeSchema,
  labelOf,
  readDuplicate,
  readFoldedCheck,
  readJudge,
  readScore,
  type JudgeReading,
} from './replies.js';
import type { CallSite, StepRunner } from './steps.js';
import type {
  AcceptedConstraint,
  CallRecord,
  IterationRecord,
  Refined,
  Seeded,
  StopReason,
} from './types.js';

/** The method's settings, and as many documents in flight as a 64-slot server keeps busy. */
export const DEFAULT_REFINE: RefineOperatorOptions = { ...refineOptionsSchema.parse({}), concurrency: 128 };

/** The call layout of the reference code: a check call and a duplicate-check call of their own each round. */
export const REFERENCE_CALLS: Pick<RefineOptions, 'checkWithNextJudge' | 'duplicateCheck'> = {
  checkWithNextJudge: false,
  duplicateCheck: 'llm',
};

/** The instruction the student sees: the initial one, then each accepted constraint on its own line. */
export function composeInstruction(
  initial: string,
  constraints: readonly { readonly text: string }[],
): string {
  if (constraints.length === 0) return initial;
  return `${initial}\n\n${constraints.map((c) => `- ${c.text}`).join('\n')}`;
}

function numbered(constraints: readonly { readonly text: string }[]): string {
  return constraints.map((c, i) => `${i + 1}. ${c.text}`).join('\n');
}

/** A constraint the student has answered with, waiting for its 0-3 check. */
interface Pending {
  readonly round: Omit<IterationRecord, 'verdict' | 'note' | 'revisedAnswer' | 'studentCheck'>;
  readonly type: ConstraintType;
  readonly text: string;
  readonly revised: string;
}

/**
 * Stage 2 of the method, per document: polish the document into a reference answer, let the student answer,
 * then up to `maxIterations` rounds of judge → duplicate check → student re-answer → 0-3 check. A document with
 * no accepted constraint is dropped (`no_constraint_accepted`); the others go on with their whole history.
 *
 * With `checkWithNextJudge`, a round's check arrives with the next round's judge reply, so a constraint is
 * pending (shown to the judge, not yet accepted) for one call; the judge's next proposal is then made against
 * the answer to the instruction with the pending constraint, whether or not the gate keeps it.
 */
export function refine(
  steps: StepRunner,
  { concurrency, ...given }: RefineOperatorOptions = DEFAULT_REFINE,
): RecordOperator<Seeded, Refined> {
  const options = checkRefineOptions(given);
  const foldCheck = options.studentCheck && options.checkWithNextJudge;
  return {
    name: 'refine',
    concurrency,
    async process(seed, ctx): Promise<Outcome<Refined>> {
      const calls: CallRecord[] = [...seed.calls];
      const before = calls.length;
      const site = (iteration: number): CallSite => ({
        docId: seed.doc.id,
        iteration,
        calls,
        signal: ctx.signal,
      });
      const initial = seed.initialInstruction;
      const reference = await steps.text('polish', { instruction: initial, document: seed.text }, site(0));
      let answer = await steps.text('student', { instruction: initial }, site(0));
      const accepted: AcceptedConstraint[] = [];
      const history: IterationRecord[] = [];
      const used = new Set<ConstraintType>();
      let pending: Pending | null = null;
      let stopReason: StopReason = 'max_iterations';

      const ownCheck = async (p: Pending): Promise<number> =>
        readScore(
          await steps.json(
            'check',
            { constraint: p.text, answer: p.revised },
            CHECK_SCHEMA,
            site(p.round.iteration),
          ),
          0,
          3,
        );
      /** The gate's decision on a constraint the student has answered with. */
      const settle = (p: Pending, check: number | null): void => {
        if (options.gateOnStudentCheck && check !== null && check >= options.gateScore) {
          ctx.count(`type_gated:${p.type}`);
          history.push({
            ...p.round,
            verdict: 'gated',
            note: `student check ${check} >= ${options.gateScore}`,
            revisedAnswer: p.revised,
            studentCheck: check,
          });
          return;
        }
        accepted.push({ type: p.type, text: p.text, iteration: p.round.iteration, studentCheck: check });
        history.push({
          ...p.round,
          verdict: 'accepted',
          note: '',
          revisedAnswer: p.revised,
          studentCheck: check,
        });
        answer = p.revised;
      };

      for (let k = 1; k <= options.maxIterations; k++) {
        const allowed = CONSTRAINT_TYPES.map((t) => t.id).filter((id) => !used.has(id));
        if (allowed.length === 0) {
          stopReason = 'types_exhausted';
          break;
        }
        const shown = pending === null ? accepted : [...accepted, pending];
        const judged = pending === null ? answer : pending.revised;
        const { reading, check } = await judge(
          steps,
          {
            instruction: options.judgeSeesRefined ? composeInstruction(initial, shown) : initial,
            reference,
            answer: judged,
            pending: pending?.text ?? null,
          },
          allowed,
          options,
          site(k),
        );
        if (pending !== null) {
          // A judge reply without a usable check (unparseable, or a server that ignored the schema) is made good.
          settle(pending, check ?? (await ownCheck(pending)));
          pending = null;
        }
        const base = { iteration: k, studentAnswer: judged, judgeAnalysis: reading.analysis };
        if (reading.kind === 'none') {
          history.push({
            ...base,
            judgeType: null,
            judgeConstraint: null,
            verdict: 'no_constraint',
            note: '',
            revisedAnswer: null,
            studentCheck: null,
          });
          stopReason = 'no_constraint';
          break;
        }
        if (reading.kind === 'invalid') {
          history.push({
            ...base,
            judgeType: reading.type,
            judgeConstraint: reading.text || null,
            verdict: 'invalid_constraint',
            note: reading.why,
            revisedAnswer: null,
            studentCheck: null,
          });
          stopReason = 'invalid_constraint';
          break;
        }
        const { type, text } = reading;
        used.add(type);
        ctx.count(`type_chosen:${type}`);
        const round = { ...base, judgeType: type, judgeConstraint: text };
        const duplicate = await duplicateCheck(steps, text, accepted, options, site(k));
        if (duplicate !== null) {
          ctx.count(`type_duplicate:${type}`);
          history.push({
            ...round,
            verdict: 'duplicate',
            note: duplicate,
            revisedAnswer: null,
            studentCheck: null,
          });
          stopReason = 'duplicate';
          break;
        }
        const revised = await steps.text(
          'student',
          { instruction: composeInstruction(initial, [...accepted, { text }]) },
          site(k),
        );
        const proposal: Pending = { round, type, text, revised };
        if (foldCheck) pending = proposal;
        else settle(proposal, options.studentCheck ? await ownCheck(proposal) : null);
      }
      if (pending !== null) settle(pending, await ownCheck(pending));

      ctx.count('calls', calls.length - before);
      ctx.count('iterations', history.length);
      ctx.count(`stop:${stopReason}`);
      ctx.count(`depth:${accepted.length}`);
      if (accepted.length === 0) return drop('no_constraint_accepted');
      const { text: _text, ...rest } = seed;
      return emit({ ...rest, calls, reference, constraints: accepted, history, stopReason });
    },
  };
}

interface JudgeInput {
  readonly instruction: string;
  readonly reference: string;
  readonly answer: string;
  /** The constraint to grade in the same call, or null for a judge call alone. */
  readonly pending: string | null;
}

/**
 * One judge call, with the pending constraint's check when there is one. A reply the LLM layer could not
 * parse after its repairs counts as an invalid proposal, and carries no check.
 */
async function judge(
  steps: StepRunner,
  input: JudgeInput,
  allowed: readonly ConstraintType[],
  options: RefineOptions,
  at: CallSite,
): Promise<{ reading: JudgeReading; check: number | undefined }> {
  const values = {
    types: allowed.map((id) => `- ${labelOf(id)}`).join('\n'),
    instruction: input.instruction,
    reference: input.reference,
    answer: input.answer,
  };
  try {
    const value =
      input.pending === null
        ? await steps.json('judge', values, judgeSchema(allowed), at)
        : await steps.json(
            'judge-check',
            { ...values, constraint: input.pending },
            judgeSchema(allowed, true),
            at,
          );
    return {
      reading: readJudge(value, allowed, constraintRules(options)),
      check: input.pending === null ? undefined : readFoldedCheck(value),
    };
  } catch (error) {
    if (errorKind(error) !== 'AIR_LLM_INVALID_OUTPUT') throw error;
    return {
      reading: {
        kind: 'invalid',
        analysis: '',
        type: null,
        text: '',
        why: 'the judge reply could not be parsed',
      },
      check: undefined,
    };
  }
}

/** Why `text` restates an accepted constraint, or null when it is new. */
async function duplicateCheck(
  steps: StepRunner,
  text: string,
  accepted: readonly AcceptedConstraint[],
  options: RefineOptions,
  at: CallSite,
): Promise<string | null> {
  if (accepted.length === 0) return null;
  if (options.duplicateCheck === 'lexical') {
    const index = restatedConstraint(text, accepted, options.duplicateOverlap);
    return index < 0 ? null : `restates constraint ${index + 1} (content-word overlap)`;
  }
  const value = await steps.json(
    'duplicate',
    { constraints: numbered(accepted), constraint: text },
    DUPLICATE_SCHEMA,
    at,
  );
  return readDuplicate(value) ? 'the duplicate check says it repeats an accepted constraint' : null;
}
