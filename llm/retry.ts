/**
 * Backoff for transient failures: exponential with full jitter (so a burst of failed calls does not come back
 * as a burst), or exactly what the server asked for with Retry-After, whichever is longer.
 */
export interface BackoffOptions {
  readonly baseMs?: number;
  readonly maxMs?: number;
  readonly random?: () => number;
}

export function backoffMs(
  attempt: number,
  retryAfterS: number | undefined,
  options: BackoffOptions = {},
): number {
  const base = options.baseMs ?? 500;
  const max = options.maxMs ?? 30_000;
  const random = options.random ?? Math.random;
  const exponential = Math.min(max, base * 2 ** Math.max(0, attempt - 1));
  const jittered = exponential * (0.5 + random() / 2);
  const asked = retryAfterS === undefined ? 0 : retryAfterS * 1000;
  return Math.max(jittered, asked);
}

/** Resolves after `ms`, or rejects with the signal's reason when it is aborted first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
