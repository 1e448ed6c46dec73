import { drop, emit, type OperatorContext, type Outcome } from '../../pipeline/operator.js';
import { errorKind } from '../../pipeline/errors.js';
import { CONSTRAINT_TYPES, type ConstraintType } from '../constraint-tagger.js';
import { restatedConstraint } from './constraint-overlap.js';
import { constraintRules, type RefineOptions } from './refine-options.js';
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
import type { PromptStep } from './prompts.js';
import type { CallSite, StepRunner } from './steps.js';
import type {
  AcceptedConstraint,
  CallRecord,
  IterationRecord,
  Refined,
  Seeded,
  StopReason,
  Verdict,
} from './types.js';

/** The instruction the student sees: the initial one, then each accepted constraint on its own line. */
export function composeInstruction(
  initial: string,
  constraints: readonly { readonly text: string }[],
): string {
  if (constraints.length === 0) return initial;
  return `${initial}\n\n${constraints.map((c) => `- ${c.text}`).join('\n')}`;
}

/** What one round's judge said, before anything was decided about it. */
type Judged = Omit<IterationRecord, 'verdict' | 'note' | 'revisedAnswer' | 'studentCheck'>;

/** A proposal the student has answered with, waiting for its 0-3 check. */
interface Proposal {
  readonly round: Judged;
  readonly type: ConstraintType;
  readonly text: string;
  readonly revised: string;
}

/** What a verdict adds to the judge's record; absent fields are empty (note) or null (the rest). */
interface Outcomes {
  readonly note?: string;
  readonly revisedAnswer?: string;
  readonly studentCheck?: number | null;
}

/**
 * Completion budgets (tokens) of the loop's steps: a polished reference and an answer of up to ~2K tokens; a
 * judge reply carrying the previous round's grade is longer than a plain one.
 */
export const REFINE_TOKENS = {
  polish: 2048,
  student: 1024,
  judge: 512,
  'judge-check': 640,
  duplicate: 256,
  check: 256,
} as const;

/**
 * One document's refinement (stage 2): everything the loop knows between calls, and one method per step of
 * a round. `refine` drives it: `start`, then `round(k)` while it returns true, then `finish`. Every history
 * entry is written by `record`.
 *
 * With `checkWithNextJudge`, a proposal's check arrives with the next round's judge reply, so it is pending
 * (shown to the judge, not yet accepted) for one call; the judge's next proposal is then made against the
 * answer to the instruction with the pending constraint, whether or not the gate keeps it.
 */
export class RefineLoop {
  private readonly calls: CallRecord[];
  private readonly callsBefore: number;
  private readonly accepted: AcceptedConstraint[] = [];
  private readonly history: IterationRecord[] = [];
  /** Types the judge proposed, kept or not: it may not offer them again. */
  private readonly spent = new Set<ConstraintType>();
  private pending: Proposal | null = null;
  private reference = '';
  /** The student's answer to the instruction with the accepted constraints. */
  private answer = '';
  private stopReason: StopReason = 'max_iterations';

  /** The steps a loop with these options may call, with their completion budgets. */
  static stepsUsed(options: RefineOptions): Record<PromptStep, number> {
    const { studentCheck, checkWithNextJudge, duplicateCheck } = options;
    const { polish, student, judge, check, duplicate } = REFINE_TOKENS;
    return {
      polish,
      student,
      judge,
      ...(studentCheck ? { check } : {}),
      ...(studentCheck && checkWithNextJudge ? { 'judge-check': REFINE_TOKENS['judge-check'] } : {}),
      ...(duplicateCheck === 'llm' ? { duplicate } : {}),
    };
  }

  constructor(
    private readonly steps: StepRunner,
    private readonly options: RefineOptions,
    private readonly seed: Seeded,
    private readonly ctx: OperatorContext,
  ) {
    this.calls = [...seed.calls];
    this.callsBefore = this.calls.length;
  }

  /** The polished reference answer and the student's first answer. */
  async start(): Promise<void> {
    const { initialInstruction: instruction, text: document } = this.seed;
    this.reference = await this.steps.text('polish', { instruction, document }, this.site(0));
    this.answer = await this.steps.text('student', { instruction }, this.site(0));
  }

  /** Round k: judge, duplicate check, re-answer, check and gate. False once the loop has stopped. */
  async round(k: number): Promise<boolean> {
    const allowed = CONSTRAINT_TYPES.map((t) => t.id).filter((id) => !this.spent.has(id));
    if (allowed.length === 0) return this.stop('types_exhausted');
    const { pending } = this;
    const { round, reading, check } = await this.judge(k, allowed);
    if (pending !== null) {
      this.pending = null;
      await this.checkAndGate(pending, check);
    }
    if (reading.kind === 'none') {
      this.record(round, 'no_constraint');
      return this.stop('no_constraint');
    }
    if (reading.kind === 'invalid') {
      this.record(round, 'invalid_constraint', { note: reading.why });
      return this.stop('invalid_constraint');
    }
    const { type, text } = reading;
    this.spent.add(type);
    this.ctx.count(`type_chosen:${type}`);
    const duplicate = await this.duplicateOf(text, k);
    if (duplicate !== null) {
      this.ctx.count(`type_duplicate:${type}`);
      this.record(round, 'duplicate', { note: duplicate });
      return this.stop('duplicate');
    }
    const proposal = { round, type, text, revised: await this.reanswer(text, k) };
    if (this.options.studentCheck && this.options.checkWithNextJudge) this.pending = proposal;
    else await this.checkAndGate(proposal);
    return true;
  }

  /** Checks a proposal no judge call followed, counts, and drops a document left with no constraint. */
  async finish(): Promise<Outcome<Refined>> {
    if (this.pending !== null) await this.checkAndGate(this.pending);
    this.pending = null;
    const { ctx, accepted, history, stopReason } = this;
    ctx.count('calls', this.calls.length - this.callsBefore);
    ctx.count('iterations', history.length);
    ctx.count(`stop:${stopReason}`);
    ctx.count(`depth:${accepted.length}`);
    if (accepted.length === 0) return drop('no_constraint_accepted');
    const { text: _text, ...rest } = this.seed;
    const { calls, reference } = this;
    return emit({ ...rest, calls, reference, constraints: accepted, history, stopReason });
  }

  /**
   * The judge call, asking the pending proposal's check too when there is one. A reply the LLM layer could
   * not parse counts as an invalid proposal, and carries no check.
   */
  private async judge(
    k: number,
    allowed: readonly ConstraintType[],
  ): Promise<{ round: Judged; reading: JudgeReading; check: number | undefined }> {
    const { pending, options } = this;
    const shown = pending === null ? this.accepted : [...this.accepted, pending];
    const studentAnswer = pending === null ? this.answer : pending.revised;
    const values = {
      types: allowed.map((id) => `- ${labelOf(id)}`).join('\n'),
      instruction: options.judgeSeesRefined
        ? composeInstruction(this.seed.initialInstruction, shown)
        : this.seed.initialInstruction,
      reference: this.reference,
      answer: studentAnswer,
    };
    let reading: JudgeReading;
    let check: number | undefined;
    try {
      const value =
        pending === null
          ? await this.steps.json('judge', values, judgeSchema(allowed), this.site(k))
          : await this.steps.json(
              'judge-check',
              { ...values, constraint: pending.text },
              judgeSchema(allowed, true),
              this.site(k),
            );
      reading = readJudge(value, allowed, constraintRules(options));
      check = pending === null ? undefined : readFoldedCheck(value);
    } catch (error) {
      if (errorKind(error) !== 'AIR_LLM_INVALID_OUTPUT') throw error;
      const why = 'the judge reply could not be parsed';
      reading = { kind: 'invalid', analysis: '', type: null, text: '', why };
    }
    const proposed = reading.kind === 'none' ? { type: null, text: '' } : reading;
    const round: Judged = {
      iteration: k,
      studentAnswer,
      judgeAnalysis: reading.analysis,
      judgeType: proposed.type,
      judgeConstraint: proposed.text || null,
    };
    return { round, reading, check };
  }

  /** Why `text` restates an accepted constraint, or null when it is new. */
  private async duplicateOf(text: string, k: number): Promise<string | null> {
    const { accepted, options } = this;
    if (accepted.length === 0) return null;
    if (options.duplicateCheck === 'lexical') {
      const index = restatedConstraint(text, accepted, options.duplicateOverlap);
      return index < 0 ? null : `restates constraint ${index + 1} (content-word overlap)`;
    }
    const constraints = accepted.map((c, i) => `${i + 1}. ${c.text}`).join('\n');
    const value = await this.steps.json(
      'duplicate',
      { constraints, constraint: text },
      DUPLICATE_SCHEMA,
      this.site(k),
    );
    return readDuplicate(value) ? 'the duplicate check says it repeats an accepted constraint' : null;
  }

  /** The student's answer to the instruction with the accepted constraints and `text`. */
  private reanswer(text: string, k: number): Promise<string> {
    const instruction = composeInstruction(this.seed.initialInstruction, [...this.accepted, { text }]);
    return this.steps.text('student', { instruction }, this.site(k));
  }

  /** A check call of its own. */
  private async ownCheck(p: Proposal): Promise<number> {
    const values = { constraint: p.text, answer: p.revised };
    return readScore(
      await this.steps.json('check', values, CHECK_SCHEMA, this.site(p.round.iteration)),
      0,
      3,
    );
  }

  /**
   * How well the revised answer follows the proposal (0-3; null with studentCheck off): the check that came
   * with a judge reply, else a check call of its own (also for a reply without a usable check, unparseable or
   * from a server that ignored the schema). Then the gate: accepted, or gated out.
   */
  private async checkAndGate(p: Proposal, folded?: number): Promise<void> {
    const { studentCheck, gateOnStudentCheck, gateScore } = this.options;
    const check = studentCheck ? (folded ?? (await this.ownCheck(p))) : null;
    const outcomes = { revisedAnswer: p.revised, studentCheck: check };
    if (gateOnStudentCheck && check !== null && check >= gateScore) {
      this.ctx.count(`type_gated:${p.type}`);
      this.record(p.round, 'gated', { ...outcomes, note: `student check ${check} >= ${gateScore}` });
      return;
    }
    this.accepted.push({ type: p.type, text: p.text, iteration: p.round.iteration, studentCheck: check });
    this.record(p.round, 'accepted', outcomes);
    this.answer = p.revised;
  }

  /** The one way a history entry is written. */
  private record(round: Judged, verdict: Verdict, outcomes: Outcomes = {}): void {
    this.history.push({
      ...round,
      verdict,
      note: outcomes.note ?? '',
      revisedAnswer: outcomes.revisedAnswer ?? null,
      studentCheck: outcomes.studentCheck ?? null,
    });
  }

  private stop(reason: StopReason): false {
    this.stopReason = reason;
    return false;
  }

  private site(iteration: number): CallSite {
    return { docId: this.seed.doc.id, iteration, calls: this.calls, signal: this.ctx.signal };
  }
}
