/**
 * The baseline: the AIR method run the way the reference code runs it, in global rounds. Each step runs over
 * every document still in play, and the next step starts only when the slowest call of the round has answered
 * (a barrier after every step). Within a round, `inFlight` calls run at once. As in the reference: the judge
 * sees the original instruction, the 0-3 student check is computed and never used, and merge + final answer
 * run for all five depths for every document that passed generate, whatever depth it reached.
 *
 * The calls are air's own (StepRunner, the v1 prompt set, the reply readers), so both sides of the benchmark
 * send the same kind of requests; only the schedule and the reference's extra calls differ.
 */
import { setMaxListeners } from 'node:events';
import { CONSTRAINT_TYPES, type ConstraintType } from '../../operators/constraint-tagger.js';
import { countWords } from '../../operators/length-filter.js';
import { composeInstruction } from '../../operators/air/refine.js';
import {
  CHECK_SCHEMA,
  DUPLICATE_SCHEMA,
  INSTRUCTION_SCHEMA,
  INSTRUCTION_SCORE_SCHEMA,
  MERGE_SCHEMA,
  judgeSchema,
  labelOf,
  readDuplicate,
  readInstruction,
  readJudge,
  readScore,
  type ConstraintRules,
  type JudgeReading,
} from '../../operators/air/replies.js';
import type { CallSite, StepRunner } from '../../operators/air/steps.js';
import type {
  AcceptedConstraint,
  CallRecord,
  Example,
  IterationRecord,
  StopReason,
} from '../../operators/air/types.js';
import { firstBrokenRule, type ValidityOptions } from '../../operators/air/validity-filter.js';
import { errorKind } from '../../pipeline/errors.js';
import type { Document } from '../../schemas/documents.js';

export interface RoundsOptions {
  /** Calls in flight at once within a round. */
  readonly inFlight: number;
  readonly generate: { readonly minScore: number; readonly minWords: number; readonly maxWords: number };
  readonly maxIterations: number;
  readonly constraintWords: ConstraintRules;
  readonly validity: ValidityOptions;
  /** Depths merged and answered for every document (the reference: 5). */
  readonly mergeDepths: number;
  /** Called at each barrier, after the round's last call answered. */
  readonly onRound?: (round: RoundRecord) => Promise<void> | void;
}

export interface RoundRecord {
  readonly name: string;
  /** Documents (or document-depths, for merge and answer) in the round: one call each. */
  readonly units: number;
  readonly wallMs: number;
}

/** One document's way through the rounds. */
export interface RoundsItem {
  readonly doc: Document;
  readonly calls: CallRecord[];
  /** `active` while it has rounds to go; `refined` once its loop stopped; `dropped`/`failed` leave early. */
  state: 'active' | 'refined' | 'dropped' | 'failed';
  /** Why it was dropped (a ledger reason) or failed (an error kind). */
  reason: string;
  initialInstruction: string;
  initialScore: number;
  reference: string;
  answer: string;
  readonly constraints: AcceptedConstraint[];
  readonly history: IterationRecord[];
  readonly used: Set<ConstraintType>;
  stopReason: StopReason;
  /** The judge's proposal of the current iteration, until it is accepted or rejected. */
  pending: { type: ConstraintType; text: string; analysis: string; revised: string } | undefined;
  /** Rows that pass the method's validity rules, by depth. */
  readonly examples: Example[];
  /** Rows made but rejected by the validity rules, by rule. */
  readonly rejected: Map<string, number>;
}

export interface RoundsResult {
  readonly items: readonly RoundsItem[];
  readonly rounds: readonly RoundRecord[];
}

/** Runs `fn` over `items` with at most `limit` at once; resolves when the last one has finished. */
export async function boundedEach<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export async function runRounds(
  steps: StepRunner,
  documents: readonly Document[],
  options: RoundsOptions,
): Promise<RoundsResult> {
  // Every call of the run shares one signal that never fires; many listeners on it are expected.
  const signal = new AbortController().signal;
  setMaxListeners(0, signal);
  const items: RoundsItem[] = documents.map((doc) => ({
    doc,
    calls: [],
    state: 'active',
    reason: '',
    initialInstruction: '',
    initialScore: 0,
    reference: '',
    answer: '',
    constraints: [],
    history: [],
    used: new Set(),
    stopReason: 'max_iterations',
    pending: undefined,
    examples: [],
    rejected: new Map(),
  }));
  const site = (item: RoundsItem, iteration: number): CallSite => ({
    docId: item.doc.id,
    iteration,
    calls: item.calls,
    signal,
  });
  const rounds: RoundRecord[] = [];

  /** One step over `work`, then the barrier. A call that throws fails its document (or its row). */
  async function round<T>(
    name: string,
    work: readonly T[],
    fn: (unit: T) => Promise<void>,
    onError: (unit: T, kind: string) => void,
  ): Promise<void> {
    const started = performance.now();
    await boundedEach(work, options.inFlight, async (unit) => {
      try {
        await fn(unit);
      } catch (error) {
        onError(unit, errorKind(error));
      }
    });
    const record = { name, units: work.length, wallMs: performance.now() - started };
    rounds.push(record);
    await options.onRound?.(record);
  }
  const failItem = (item: RoundsItem, kind: string): void => {
    item.state = 'failed';
    item.reason = kind;
    item.pending = undefined;
  };
  const active = (): RoundsItem[] => items.filter((i) => i.state === 'active');

  // Stage 1: back-translation, then the 0-5 score.
  await round(
    'instruction',
    active(),
    async (item) => {
      const instruction = readInstruction(
        await steps.json('instruction', { document: item.doc.text }, INSTRUCTION_SCHEMA, site(item, 0)),
      );
      const words = countWords(instruction);
      item.initialInstruction = instruction;
      if (words < options.generate.minWords || words > options.generate.maxWords) {
        item.state = 'dropped';
        item.reason = 'instruction_length';
      }
    },
    failItem,
  );
  await round(
    'instruction-score',
    active(),
    async (item) => {
      const reply = await steps.json(
        'instruction-score',
        { instruction: item.initialInstruction },
        INSTRUCTION_SCORE_SCHEMA,
        site(item, 0),
      );
      item.initialScore = readScore(reply, 0, 5);
      if (item.initialScore < options.generate.minScore) {
        item.state = 'dropped';
        item.reason = 'low_score';
      }
    },
    failItem,
  );
  const generated = active();

  // Stage 2: the reference answer and the student's first answer, then the judge rounds.
  await round(
    'polish',
    active(),
    async (item) => {
      item.reference = await steps.text(
        'polish',
        { instruction: item.initialInstruction, document: item.doc.text },
        site(item, 0),
      );
    },
    failItem,
  );
  await round(
    'student',
    active(),
    async (item) => {
      item.answer = await steps.text('student', { instruction: item.initialInstruction }, site(item, 0));
    },
    failItem,
  );
  for (let k = 1; k <= options.maxIterations; k++) {
    await round(
      `judge ${k}`,
      active(),
      async (item) => judgeStep(steps, item, k, options.constraintWords, site(item, k)),
      failItem,
    );
    await round(
      `duplicate ${k}`,
      active().filter((i) => i.pending !== undefined && i.constraints.length > 0),
      async (item) => {
        const { text } = item.pending!;
        const reply = await steps.json(
          'duplicate',
          { constraints: numbered(item.constraints), constraint: text },
          DUPLICATE_SCHEMA,
          site(item, k),
        );
        if (readDuplicate(reply)) {
          const { type, analysis } = item.pending!;
          item.history.push(rejected(k, item.answer, analysis, type, text, 'duplicate'));
          item.pending = undefined;
          item.stopReason = 'duplicate';
          item.state = 'refined';
        }
      },
      failItem,
    );
    await round(
      `student ${k}`,
      active().filter((i) => i.pending !== undefined),
      async (item) => {
        const candidate = [...item.constraints, { text: item.pending!.text }];
        item.pending!.revised = await steps.text(
          'student',
          { instruction: composeInstruction(item.initialInstruction, candidate) },
          site(item, k),
        );
      },
      failItem,
    );
    await round(
      `check ${k}`,
      active().filter((i) => i.pending !== undefined),
      async (item) => {
        const { type, text, analysis, revised } = item.pending!;
        // Computed and never used, as in the reference: every proposal that got here is accepted.
        const check = readScore(
          await steps.json('check', { constraint: text, answer: revised }, CHECK_SCHEMA, site(item, k)),
          0,
          3,
        );
        item.constraints.push({ type, text, iteration: k, studentCheck: check });
        item.history.push({
          iteration: k,
          studentAnswer: item.answer,
          judgeAnalysis: analysis,
          judgeType: type,
          judgeConstraint: text,
          verdict: 'accepted',
          note: '',
          revisedAnswer: revised,
          studentCheck: check,
        });
        item.answer = revised;
        item.pending = undefined;
      },
      failItem,
    );
  }
  for (const item of active()) item.state = 'refined';

  // Merge and final answer at every depth for every document that passed generate, reached or not.
  const survivors = generated.filter((i) => i.state === 'refined');
  const rows = survivors.flatMap((item) =>
    Array.from({ length: options.mergeDepths }, (_, i) => ({
      item,
      depth: i + 1,
      instruction: '',
      output: '',
      ok: true,
    })),
  );
  const failRow = (row: (typeof rows)[number], kind: string): void => {
    row.ok = false;
    row.item.rejected.set(`failed:${kind}`, (row.item.rejected.get(`failed:${kind}`) ?? 0) + 1);
  };
  await round(
    'merge',
    rows,
    async (row) => {
      const constraints = row.item.constraints.slice(0, row.depth);
      row.instruction = readInstruction(
        await steps.json(
          'merge',
          {
            examples: steps.mergeExample(row.depth),
            instruction: row.item.initialInstruction,
            constraints: numbered(constraints),
          },
          MERGE_SCHEMA,
          site(row.item, row.depth),
        ),
      );
    },
    failRow,
  );
  await round(
    'answer',
    rows.filter((r) => r.ok),
    async (row) => {
      row.output = await steps.text('answer', { instruction: row.instruction }, site(row.item, row.depth));
    },
    failRow,
  );
  for (const row of rows.filter((r) => r.ok)) {
    const { item } = row;
    const { text, ...ref } = item.doc;
    const example: Example = {
      doc: { ...ref, words: countWords(text) },
      initialInstruction: item.initialInstruction,
      initialScore: item.initialScore,
      calls: item.calls,
      reference: item.reference,
      constraints: item.constraints.slice(0, row.depth),
      history: item.history,
      stopReason: item.stopReason,
      depth: row.depth,
      instruction: row.instruction,
      output: row.output,
    };
    const broken = firstBrokenRule(example, options.validity);
    if (broken === undefined) item.examples.push(example);
    else item.rejected.set(broken, (item.rejected.get(broken) ?? 0) + 1);
  }
  return { items, rounds };
}

/** One judge call, read as refine's judge reads it; a rejected proposal ends the document's loop. */
async function judgeStep(
  steps: StepRunner,
  item: RoundsItem,
  k: number,
  rules: ConstraintRules,
  at: CallSite,
): Promise<void> {
  const allowed = CONSTRAINT_TYPES.map((t) => t.id).filter((id) => !item.used.has(id));
  if (allowed.length === 0) {
    item.stopReason = 'types_exhausted';
    item.state = 'refined';
    return;
  }
  let reading: JudgeReading;
  try {
    const value = await steps.json(
      'judge',
      {
        types: allowed.map((id) => `- ${labelOf(id)}`).join('\n'),
        // The reference shows the judge the original instruction (judgeSeesRefined = false).
        instruction: item.initialInstruction,
        reference: item.reference,
        answer: item.answer,
      },
      judgeSchema(allowed),
      at,
    );
    reading = readJudge(value, allowed, rules);
  } catch (error) {
    if (errorKind(error) !== 'AIR_LLM_INVALID_OUTPUT') throw error;
    reading = { kind: 'invalid', analysis: '', type: null, text: '', why: 'unparseable' };
  }
  if (reading.kind !== 'constraint') {
    const verdict = reading.kind === 'none' ? 'no_constraint' : 'invalid_constraint';
    const type = reading.kind === 'invalid' ? reading.type : null;
    const text = reading.kind === 'invalid' ? reading.text : '';
    item.history.push(rejected(k, item.answer, reading.analysis, type, text, verdict));
    item.stopReason = verdict;
    item.state = 'refined';
    return;
  }
  item.used.add(reading.type);
  item.pending = { type: reading.type, text: reading.text, analysis: reading.analysis, revised: '' };
}

function rejected(
  iteration: number,
  studentAnswer: string,
  judgeAnalysis: string,
  judgeType: ConstraintType | null,
  text: string,
  verdict: 'duplicate' | 'no_constraint' | 'invalid_constraint',
): IterationRecord {
  return {
    iteration,
    studentAnswer,
    judgeAnalysis,
    judgeType,
    judgeConstraint: text || null,
    verdict,
    note: '',
    revisedAnswer: null,
    studentCheck: null,
  };
}

function numbered(constraints: readonly { readonly text: string }[]): string {
  return constraints.map((c, i) => `${i + 1}. ${c.text}`).join('\n');
}
