import type { ScoredExample } from '../operators/air/types.js';
import type { MetaValue } from '../schemas/documents.js';

/** An AIR example as the row the sink writes (columns: schemas/air.ts). */
export interface RowProvenance {
  readonly guidanceModel: string;
  readonly studentModel: string;
  readonly promptVersion: string;
  readonly configFingerprint: string;
}

export function airRow(example: ScoredExample, provenance: RowProvenance): Record<string, unknown> {
  return {
    instruction: example.instruction,
    input: '',
    output: example.output,
    document_id: example.doc.id,
    source_file: example.doc.sourceFile,
    source_row: example.doc.sourceRow,
    document_words: example.doc.words,
    initial_instruction: example.initialInstruction,
    initial_score: example.initialScore,
    reference: example.reference,
    depth: example.depth,
    depth_reached: example.history.filter((h) => h.verdict === 'accepted').length,
    stop_reason: example.stopReason,
    constraints: example.constraints.map((c) => ({
      type: c.type,
      text: c.text,
      iteration: c.iteration,
      student_check: c.studentCheck,
    })),
    history: example.history.map((h) => ({
      iteration: h.iteration,
      student_answer: h.studentAnswer,
      judge_analysis: h.judgeAnalysis,
      judge_type: h.judgeType,
      judge_constraint: h.judgeConstraint,
      verdict: h.verdict,
      note: h.note,
      revised_answer: h.revisedAnswer,
      student_check: h.studentCheck,
    })),
    complexity: example.complexity,
    quality: example.quality,
    instruction_words: example.instructionWords,
    output_words: example.outputWords,
    tagged_types: [...example.taggedTypes],
    guidance_model: provenance.guidanceModel,
    student_model: provenance.studentModel,
    prompt_version: provenance.promptVersion,
    config_fingerprint: provenance.configFingerprint,
    calls: example.calls.map((c) => ({
      step: c.step,
      iteration: c.iteration,
      role: c.role,
      model: c.model,
      prompt_tokens: c.promptTokens,
      completion_tokens: c.completionTokens,
      latency_ms: c.latencyMs,
      cached: c.cached,
      attempts: c.attempts,
    })),
    ...(example.doc.meta as Record<string, MetaValue>),
  };
}
