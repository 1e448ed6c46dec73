import { LlmError } from './errors.js';

/**
 * Stops the run when an endpoint has failed without a single success for longer than `openAfterMs`: retrying
 * forever against a dead server only burns the run's time (and, hosted, its money). Once open it stays open;
 * the run stops cleanly with the endpoint and its last error named, and a resume continues from there.
 */
export class CircuitBreaker {
  private failingSince: number | undefined;
  private lastError: string | undefined;
  private openError: LlmError | undefined;

  constructor(
    private readonly endpoint: string,
    private readonly openAfterMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Throws once the breaker is open. */
  check(): void {
    if (this.openError !== undefined) throw this.openError;
    if (this.failingSince !== undefined && this.now() - this.failingSince > this.openAfterMs) {
      const seconds = Math.round((this.now() - this.failingSince) / 1000);
      this.openError = new LlmError(
        'AIR_LLM_CIRCUIT_OPEN',
        `${this.endpoint} has failed for ${seconds}s without one success; last error: ${this.lastError ?? 'unknown'}`,
      );
      throw this.openError;
    }
  }

  success(): void {
    this.failingSince = undefined;
  }

  failure(error: LlmError): void {
    this.failingSince ??= this.now();
    this.lastError = error.message;
  }

  get isOpen(): boolean {
    return this.openError !== undefined;
  }
}
