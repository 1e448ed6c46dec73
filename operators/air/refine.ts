import { drop, emit, type Outcome, type RecordOperator } from '../../pipeline/operator.js';
import { errorKind } from '../../pipeline/errors.js';
import { CONSTRAINT_TYPES, type ConstraintType } from '../constraint-tagger.js';
import {
  CHECK_SCHEMA,
  DEFAULT_CONSTRAINT_RULES,
  DUPLICATE_SCHEMA,
  judgeSchema,
  labelOf,
  readDuplicate,
  readJudge,
  readScore,
  type ConstraintRules,
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

export interface RefineOptions {
  /** Most judge rounds per document (method: 5). */
  readonly maxIterations: number;
  /** Grade the student's revised answer against each new constraint (0-3). */
  readonly studentCheck: boolean;
  /**
   * Keep a constraint only where the student falls short of it even when asked (check < gateScore): the
   * paper's intent, which the reference code computes but never uses. Needs `studentCheck`.
   */
  readonly gateOnStudentCheck: boolean;
  /** The check score at or above which the student is taken to follow a constraint already (0-3). */
  readonly gateScore: number;
  /** Show the judge the instruction with the constraints so far (the reference shows the original one). */
  readonly judgeSeesRefined: boolean;
  readonly constraintWords: ConstraintRules;
  /** Documents in their loops at once; each moves through its iterations on its own. */
  readonly concurrency: number;
}

export const DEFAULT_REFINE: RefineOptions = {
  maxIterations: 5,
  studentCheck: true,
  gateOnStudentCheck: true,
  gateScore: 3,
  judgeSeesRefined: true,
  constraintWords: DEFAULT_CONSTRAINT_RULES,
  concurrency: 128,
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

/**
 * Stage 2 of the method, per document: polish the document into a reference answer, let the student answer,
 * then up to `maxIterations` rounds of judge → duplicate check → student re-answer → 0-3 check. A document with
 * no accepted constraint is dropped (`no_constraint_accepted`); the others go on with their whole history.
 */
export function refine(
  steps: StepRunner,
  options: RefineOptions = DEFAULT_REFINE,
): RecordOperator<Seeded, Refined> {
  if (options.gateOnStudentCheck && !options.studentCheck) {
    throw new RangeError('refine: gateOnStudentCheck needs studentCheck');
  }
  return {
    name: 'refine',
    concurrency: options.concurrency,
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
      let stopReason: StopReason = 'max_iterations';

      for (let k = 1; k <= options.maxIterations; k++) {
        const allowed = CONSTRAINT_TYPES.map((t) => t.id).filter((id) => !used.has(id));
        if (allowed.length === 0) {
          stopReason = 'types_exhausted';
          break;
        }
        const instruction = options.judgeSeesRefined ? composeInstruction(initial, accepted) : initial;
        const reading = await judge(steps, instruction, reference, answer, allowed, options, site(k));
        const base = { iteration: k, studentAnswer: answer, judgeAnalysis: reading.analysis };
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
        const proposal = { ...base, judgeType: type, judgeConstraint: text };
        if (accepted.length > 0) {
          const duplicate = readDuplicate(
            await steps.json(
              'duplicate',
              { constraints: numbered(accepted), constraint: text },
              DUPLICATE_SCHEMA,
              site(k),
            ),
          );
          if (duplicate) {
            ctx.count(`type_duplicate:${type}`);
            history.push({
              ...proposal,
              verdict: 'duplicate',
              note: '',
              revisedAnswer: null,
              studentCheck: null,
            });
            stopReason = 'duplicate';
            break;
          }
        }
        const candidate = [...accepted, { text }];
        const revised = await steps.text(
          'student',
          { instruction: composeInstruction(initial, candidate) },
          site(k),
        );
        const check = options.studentCheck
          ? readScore(
              await steps.json('check', { constraint: text, answer: revised }, CHECK_SCHEMA, site(k)),
              0,
              3,
            )
          : null;
        if (options.gateOnStudentCheck && check !== null && check >= options.gateScore) {
          ctx.count(`type_gated:${type}`);
          history.push({
            ...proposal,
            verdict: 'gated',
            note: `student check ${check} >= ${options.gateScore}`,
            revisedAnswer: revised,
            studentCheck: check,
          });
          continue;
        }
        accepted.push({ type, text, iteration: k, studentCheck: check });
        history.push({
          ...proposal,
          verdict: 'accepted',
          note: '',
          revisedAnswer: revised,
          studentCheck: check,
        });
        answer = revised;
      }

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

/** One judge call; an answer the LLM layer could not parse after its repairs counts as an invalid proposal. */
async function judge(
  steps: StepRunner,
  instruction: string,
  reference: string,
  answer: string,
  allowed: readonly ConstraintType[],
  options: RefineOptions,
  at: CallSite,
): Promise<JudgeReading> {
  const types = allowed.map((id) => `- ${labelOf(id)}`).join('\n');
  try {
    const value = await steps.json(
      'judge',
      { types, instruction, reference, answer },
      judgeSchema(allowed),
      at,
    );
    return readJudge(value, allowed, options.constraintWords);
  } catch (error) {
    if (errorKind(error) !== 'AIR_LLM_INVALID_OUTPUT') throw error;
    return {
      kind: 'invalid',
      analysis: '',
      type: null,
      text: '',
      why: 'the judge reply could not be parsed',
    };
  }
}
