import { sumSteps, type RoleModelSnapshot, type StepCounts } from '../llm/accounting.js';
import type { RunConfig } from './config.js';
import { runJob, type JobOptions } from './run-job.js';

/** What `air bench --pipeline` reports: the AIR method's throughput and cost per document on your servers. */
export interface PipelineBenchReport {
  readonly documents: number;
  /** Documents that reached the LLM stages (passed the length filter). */
  readonly documentsToLlm: number;
  readonly rowsWritten: number;
  readonly wallS: number;
  readonly documentsPerS: number;
  readonly rowsPerS: number;
  readonly calls: number;
  readonly callsPerS: number;
  /** Per document that reached the LLM stages, and per written row (an accepted instruction). */
  readonly callsPerDocument: number;
  readonly callsPerRow: number;
  readonly promptTokensPerDocument: number;
  readonly completionTokensPerDocument: number;
  readonly tokensPerRow: number;
  /**
   * Prompt tokens the servers report they found in their prefix cache, per document, and the prompt tokens they
   * computed (sent minus cached): null when no server reported it (vLLM: --enable-prompt-tokens-details).
   */
  readonly serverCachedTokensPerDocument: number | null;
  readonly promptTokensComputedPerDocument: number | null;
  /** Per prompt step: calls, prompt tokens sent and found cached by the server. */
  readonly bySteps: Readonly<Record<string, StepCounts>>;
  readonly byRole: ReadonlyArray<{
    role: string;
    model: string;
    calls: number;
    promptTokens: number;
    completionTokens: number;
    latencyP50Ms: number | null;
    latencyP95Ms: number | null;
    errors: number;
  }>;
  /** Per replica (server) of each role: attempts sent there, answered, failed. */
  readonly byReplica: ReadonlyArray<{
    role: string;
    baseUrl: string;
    attempts: number;
    answered: number;
    errors: number;
  }>;
  readonly status: string;
  readonly dropped: Readonly<Record<string, number>>;
}

/**
 * Runs the AIR job on `config` (its source.limit bounding the documents) with the response cache off, so
 * every call reaches the servers, and reduces the ledger and the accounting to per-document figures.
 */
export async function benchPipeline(
  config: RunConfig,
  options: JobOptions = {},
): Promise<PipelineBenchReport> {
  const uncached: RunConfig = { ...config, method: 'air', llm: { ...config.llm, cache: false } };
  const started = performance.now();
  const result = await runJob(uncached, options);
  const wallS = (performance.now() - started) / 1000;
  const totals = result.report.totals;
  const accounting = result.llm!.accounting;
  const lengthFilter = result.report.stages.find((s) => s.name === 'length_filter');
  const documentsToLlm = lengthFilter?.passed ?? totals.read;
  const calls = accounting.totals.calls;
  const prompt = accounting.totals.promptTokens;
  const completion = accounting.totals.completionTokens;
  const per = (value: number, n: number): number => (n === 0 ? 0 : value / n);
  const steps = accounting.steps ?? {};
  const stepTotal = sumSteps(steps);
  const reported = stepTotal.reportedCalls > 0;
  return {
    documents: totals.read,
    documentsToLlm,
    rowsWritten: totals.rowsWritten,
    wallS,
    documentsPerS: per(totals.read, wallS),
    rowsPerS: per(totals.rowsWritten, wallS),
    calls,
    callsPerS: per(calls, wallS),
    callsPerDocument: per(calls, documentsToLlm),
    callsPerRow: per(calls, totals.rowsWritten),
    promptTokensPerDocument: per(prompt, documentsToLlm),
    completionTokensPerDocument: per(completion, documentsToLlm),
    tokensPerRow: per(prompt + completion, totals.rowsWritten),
    serverCachedTokensPerDocument: reported ? per(stepTotal.serverCachedTokens, documentsToLlm) : null,
    promptTokensComputedPerDocument: reported
      ? per(stepTotal.promptTokens - stepTotal.serverCachedTokens, documentsToLlm)
      : null,
    bySteps: steps,
    byRole: accounting.entries.map((e: RoleModelSnapshot) => ({
      role: e.role,
      model: e.model,
      calls: e.calls,
      promptTokens: e.promptTokens,
      completionTokens: e.completionTokens,
      latencyP50Ms: e.latency.p50,
      latencyP95Ms: e.latency.p95,
      errors: Object.values(e.errors).reduce((a, b) => a + b, 0),
    })),
    byReplica: accounting.entries.flatMap((e: RoleModelSnapshot) =>
      Object.entries(e.replicas ?? {}).map(([baseUrl, r]) => ({
        role: e.role,
        baseUrl,
        attempts: r.attempts,
        answered: r.answered,
        errors: Object.values(r.errors).reduce((a, b) => a + b, 0),
      })),
    ),
    status: result.report.status,
    dropped: totals.dropped,
  };
}
