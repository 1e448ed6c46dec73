import { z } from 'zod';
import { ConfigError } from '../../pipeline/errors.js';
import { hash32, Rng } from './replies.js';

/**
 * Fault injection. Each chat completion draws at most one fault, from a PRNG seeded by the simulator's seed and
 * advanced once per request, so a run sees the same faults in the same arrival order every time. The draw is
 * deliberately not keyed by the request's content: a retried request must be able to succeed.
 *
 * When they strike: 429, 500 and 503 answer at once (a gateway refusing); `stall` happens before admission (a
 * hung proxy: it holds no slot); `reset`, `malformed` and `truncated` strike after the request was served, at
 * the moment its answer is sent.
 */
const rate = z.number().min(0).max(1).default(0);

export const faultOptionsSchema = z
  .object({
    /** 429 with a Retry-After header of `retryAfterS` seconds. */
    rate429: rate,
    retryAfterS: z.number().int().nonnegative().default(1),
    rate500: rate,
    rate503: rate,
    /** Headers and half the body are sent, then the socket is destroyed. */
    rateReset: rate,
    /** No answer for `stallMs` (then a normal one), or never when `stallMs` is unset. */
    rateStall: rate,
    stallMs: z.number().nonnegative().optional(),
    /** 200 with a body that is not valid JSON (the real answer cut in half). */
    rateMalformed: rate,
    /** A valid answer whose reply is cut to half its tokens, with finish_reason "length". */
    rateTruncated: rate,
  })
  .refine(
    // The tolerance lets rates such as 0.1 + 0.2 + 0.7 pass despite floating-point rounding.
    (f) =>
      f.rate429 + f.rate500 + f.rate503 + f.rateReset + f.rateStall + f.rateMalformed + f.rateTruncated <=
      1 + 1e-9,
    { message: 'the fault rates add up to more than 1' },
  );

export type FaultOptions = z.input<typeof faultOptionsSchema>;
export type FaultConfig = z.output<typeof faultOptionsSchema>;
export type FaultKind =
  'status429' | 'status500' | 'status503' | 'reset' | 'stall' | 'malformed' | 'truncated';

export const FAULT_KINDS: readonly FaultKind[] = [
  'status429',
  'status500',
  'status503',
  'reset',
  'stall',
  'malformed',
  'truncated',
];

export function resolveFaults(options: FaultOptions = {}): FaultConfig {
  const parsed = faultOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? '' : `${issue.path.join('.')}: `;
    throw new ConfigError(`simulator faults: ${where}${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

function rateOf(config: FaultConfig, kind: FaultKind): number {
  switch (kind) {
    case 'status429':
      return config.rate429;
    case 'status500':
      return config.rate500;
    case 'status503':
      return config.rate503;
    case 'reset':
      return config.rateReset;
    case 'stall':
      return config.rateStall;
    case 'malformed':
      return config.rateMalformed;
    case 'truncated':
      return config.rateTruncated;
  }
}

export class FaultInjector {
  readonly config: FaultConfig;
  private readonly rng: Rng;
  private readonly counts = new Map<FaultKind, number>(FAULT_KINDS.map((kind) => [kind, 0]));

  constructor(options: FaultOptions, seed: number) {
    this.config = resolveFaults(options);
    this.rng = new Rng(hash32(`faults:${seed}`));
  }

  /** One uniform draw per request, mapped onto consecutive intervals of width rate429, rate500, ... */
  draw(): FaultKind | undefined {
    const u = this.rng.next();
    let edge = 0;
    for (const kind of FAULT_KINDS) {
      edge += rateOf(this.config, kind);
      if (u < edge) {
        this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
        return kind;
      }
    }
    return undefined;
  }

  /** Faults injected so far, by kind. */
  stats(): Readonly<Record<FaultKind, number>> {
    return Object.fromEntries(this.counts) as Record<FaultKind, number>;
  }
}

/** The non-zero rates, for a start-up line: "429 10%, reset 1%" (empty when there are none). */
export function describeFaults(options: FaultOptions): string {
  const config = resolveFaults(options);
  return FAULT_KINDS.filter((kind) => rateOf(config, kind) > 0)
    .map((kind) => `${kind.replace('status', '')} ${+(rateOf(config, kind) * 100).toFixed(2)}%`)
    .join(', ');
}

/**
 * The programmatic outage switch for circuit-breaker tests. `503` mode answers 503 to every request; `close`
 * mode closes every open connection and each new one as soon as it is accepted, like a crashed server behind a
 * port that still accepts.
 */
export type DownMode = '503' | 'close';

export class Outage {
  private downNow = false;

  constructor(readonly mode: DownMode = '503') {}

  get down(): boolean {
    return this.downNow;
  }

  set(down: boolean): void {
    this.downNow = down;
  }
}
