import type { ConstraintType } from '../constraint-tagger.js';
import type { MetaValue } from '../../schemas/documents.js';

/**
 * The values that flow between the AIR stages. Each stage adds to what it received; the document text is
 * carried only as far as the refine stage, which is the last one to read it.
 */

/** One LLM call, as recorded on the row it served (tokens and latency per call go into the output). */
export interface CallRecord {
  readonly step: string;
  /** Refinement iteration (0 outside the loop; the depth for merge and answer calls). */
  readonly iteration: number;
  readonly role: string;
  readonly model: string;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly latencyMs: number;
  readonly cached: boolean;
  readonly attempts: number;
}

/** Where a row came from, without the document text. */
export interface DocumentRef {
  readonly id: string;
  readonly sourceFile: string;
  readonly sourceRow: number;
  readonly meta: Readonly<Record<string, MetaValue>>;
  /** Whitespace-separated words of the document (for length statistics; the text itself is not kept). */
  readonly words: number;
}

/** After `generate`: the back-translated instruction that passed the quality gate. */
export interface Seeded {
  readonly doc: DocumentRef;
  readonly text: string;
  readonly initialInstruction: string;
  readonly initialScore: number;
  readonly calls: readonly CallRecord[];
}

export interface AcceptedConstraint {
  readonly type: ConstraintType;
  readonly text: string;
  /** The iteration that found it (1-based). */
  readonly iteration: number;
  /** How well the student followed it once asked (0-3); null when the check is off. */
  readonly studentCheck: number | null;
}

/** What happened to the judge's proposal in one iteration. */
export type Verdict =
  | 'accepted'
  /** The student already follows it fully once asked: no training signal (the student-check gate). */
  | 'gated'
  | 'duplicate'
  | 'no_constraint'
  | 'invalid_constraint';

export interface IterationRecord {
  readonly iteration: number;
  /** The student's answer the judge compared with the reference. */
  readonly studentAnswer: string;
  readonly judgeAnalysis: string;
  readonly judgeType: ConstraintType | null;
  readonly judgeConstraint: string | null;
  readonly verdict: Verdict;
  /** Why a proposal was not accepted, in words (empty when accepted). */
  readonly note: string;
  /** The student's answer to the instruction with this constraint added (null when not asked). */
  readonly revisedAnswer: string | null;
  readonly studentCheck: number | null;
}

/** Why the refinement loop of a document ended. */
export type StopReason =
  'max_iterations' | 'no_constraint' | 'invalid_constraint' | 'duplicate' | 'types_exhausted';

/** After `refine`: the loop's whole record. The document text is dropped here. */
export interface Refined extends Omit<Seeded, 'text'> {
  readonly reference: string;
  readonly constraints: readonly AcceptedConstraint[];
  readonly history: readonly IterationRecord[];
  readonly stopReason: StopReason;
}

/** After `merge`: one training example at one depth (1..constraints.length). */
export interface Example extends Refined {
  readonly depth: number;
  readonly instruction: string;
  readonly output: string;
}

/** After `score`: LLM-judged and model-free measures. */
export interface ScoredExample extends Example {
  /** 1-10, null when LLM scoring is off. */
  readonly complexity: number | null;
  readonly quality: number | null;
  readonly instructionWords: number;
  readonly outputWords: number;
  /** Constraint types the rule-based tagger finds stated in the instruction. */
  readonly taggedTypes: readonly ConstraintType[];
}
