/**
 * The LLM client both sides use: air's HttpLlmClient (both roles on one simulator, no response cache) behind
 * one in-flight budget shared by the roles, so the streaming side cannot run more calls at once than a round
 * of the baseline does.
 */
import { Accounting } from '../../llm/accounting.js';
import { Admission } from '../../llm/admission.js';
import { HttpLlmClient } from '../../llm/client.js';
import { endpointSchema, resolveEndpoint } from '../../llm/endpoint.js';
import type { ChatMessage, ChatOptions, ChatResult, LlmClient, Role } from '../../llm/types.js';

export const BENCH_MODELS = { guidance: 'air-sim-guidance', student: 'air-sim-student' } as const;

/** Counts logical calls (one per StepRunner call, repairs and retries inside) and caps those in flight. */
export class BudgetedClient implements LlmClient {
  private readonly budget: Admission;
  /** Logical calls answered or failed, by role. */
  readonly calls = new Map<Role, number>();
  readonly failures = new Map<Role, number>();
  /** Most calls in flight at once. */
  peakInFlight = 0;

  constructor(
    private readonly inner: LlmClient,
    readonly inFlight: number,
  ) {
    // The admission controller with no overload signal is a FIFO semaphore: it never cuts its limit.
    this.budget = new Admission({ maxConcurrency: inFlight, initialConcurrency: inFlight });
  }

  get totalCalls(): number {
    let total = 0;
    for (const n of this.calls.values()) total += n;
    return total;
  }

  async chat(role: Role, messages: readonly ChatMessage[], options?: ChatOptions): Promise<ChatResult> {
    const permit = await this.budget.acquire();
    this.peakInFlight = Math.max(this.peakInFlight, this.budget.active);
    this.calls.set(role, (this.calls.get(role) ?? 0) + 1);
    try {
      return await this.inner.chat(role, messages, options);
    } catch (error) {
      this.failures.set(role, (this.failures.get(role) ?? 0) + 1);
      throw error;
    } finally {
      this.budget.release(permit, 'success');
    }
  }

  close(): void {
    this.budget.close();
  }
}

export interface BenchClient {
  readonly client: BudgetedClient;
  readonly http: HttpLlmClient;
  readonly accounting: Accounting;
  close(): Promise<void>;
}

/** Both roles on the simulator at `url`, each endpoint allowed the whole budget (the wrapper enforces it). */
export function benchLlm(url: string, inFlight: number): BenchClient {
  const accounting = new Accounting();
  const endpoints = (['guidance', 'student'] as const).map((role) =>
    resolveEndpoint(
      role,
      endpointSchema.parse({
        baseUrl: url,
        model: BENCH_MODELS[role],
        maxConcurrency: inFlight,
        initialConcurrency: inFlight,
      }),
    ),
  );
  const http = new HttpLlmClient({ endpoints, recorder: accounting });
  const client = new BudgetedClient(http, inFlight);
  return {
    client,
    http,
    accounting,
    async close() {
      client.close();
      await http.close();
    },
  };
}
