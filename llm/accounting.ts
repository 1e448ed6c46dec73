/**
 * Per (role, model) accounting of LLM calls: counts, tokens, latency, errors, retries and cost.
 *
 * Everything merges by addition (latency through a bucketed histogram), so the snapshots of two half-runs, of
 * worker threads or of Slurm array tasks merge into the snapshot of the whole run.
 *
 * Cache hits count as calls and as hits, but add no latency sample (no request was made) and no cost: their
 * tokens go to `cachedPromptTokens`/`cachedCompletionTokens`, and `promptTokens`/`completionTokens` are the
 * billed tokens, so cost = billed tokens x price, always.
 *
 * Calls that reached a server are also added up per step (the `step` a caller names, AIR's prompt steps): prompt
 * tokens sent against the prompt tokens the server reports it found in its prefix cache, the GPU work layout
 * changes.
 */
import { z } from 'zod';
import { LogHistogram, type HistogramSnapshot, type Summary } from './histogram.js';
import type { Role } from './types.js';

export const ModelPriceSchema = z
  .object({
    /** Price of a million prompt tokens. */
    inputPerMTok: z.number().finite().nonnegative(),
    /** Price of a million completion tokens. */
    outputPerMTok: z.number().finite().nonnegative(),
    /** ISO 4217 code; USD when unset. */
    currency: z
      .string()
      .regex(/^[A-Z]{3}$/, 'a three-letter currency code such as USD')
      .optional(),
  })
  .strict();

/** Prices by model name, as the server is asked for it; a model missing here is reported as unpriced. */
export const PriceTableSchema = z.record(z.string().min(1), ModelPriceSchema);

export type ModelPrice = z.infer<typeof ModelPriceSchema>;
export type PriceTable = z.infer<typeof PriceTableSchema>;

const DEFAULT_CURRENCY = 'USD';

/** One answered call, as the client saw it. */
export interface CallRecord {
  readonly role: Role;
  readonly model: string;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Wall time of the call, retries included; ignored for a cache hit. */
  readonly latencyMs: number;
  readonly cached: boolean;
  /** HTTP attempts made (0 for a cache hit); every attempt beyond the first is a retry. */
  readonly attempts: number;
  /** What the call was for; unnamed calls are not added up per step. */
  readonly step?: string;
  /** Prompt tokens the server reports it found in its prefix cache; undefined when it does not say. */
  readonly serverCachedTokens?: number;
}

/** One step's calls that reached a server. */
export interface StepCounts {
  readonly calls: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Calls whose server reported its prefix-cache hits, and the prompt tokens of those calls. */
  readonly reportedCalls: number;
  readonly reportedPromptTokens: number;
  /** Prompt tokens those servers found in their prefix cache (not computed again). */
  readonly serverCachedTokens: number;
}

/** What the LLM client reports to: an `Accounting`, or anything that records the same calls. */
export type CallRecorder = Pick<Accounting, 'record' | 'recordError'> &
  Partial<Pick<Accounting, 'recordAttempt'>>;

/** What one replica (server) of a role did: every HTTP attempt sent there, answered or failed by code. */
export interface ReplicaTally {
  readonly attempts: number;
  readonly answered: number;
  readonly errors: Readonly<Record<string, number>>;
}

/** The counters every level of accounting keeps (one role and model, or the whole run). */
export interface CallCounts {
  /** Answered calls, cache hits included. */
  readonly calls: number;
  readonly cacheHits: number;
  /** Billed tokens: calls that reached the server. */
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Tokens of answers served from the cache (not billed). */
  readonly cachedPromptTokens: number;
  readonly cachedCompletionTokens: number;
  /** Attempts beyond the first, of answered and of failed calls. */
  readonly retries: number;
  /** Failed calls by error code, keys sorted. */
  readonly errors: Readonly<Record<string, number>>;
}

export interface RoleModelSnapshot extends CallCounts {
  readonly role: Role;
  readonly model: string;
  /** Per replica, by base URL (keys sorted); absent in snapshots older than replicas. */
  readonly replicas?: Readonly<Record<string, ReplicaTally>>;
  /** Latency of calls that reached the server, in ms. */
  readonly latency: Summary;
  readonly latencyHistogram: HistogramSnapshot;
  /**
   * The price the cost was computed with; null when the model is unpriced or when merged parts were priced
   * differently (then `cost` is the sum of the parts' costs).
   */
  readonly price: Required<ModelPrice> | null;
  /** null when unpriced: an unknown cost is never shown as 0. */
  readonly cost: number | null;
  readonly currency: string | null;
  readonly unpriced: boolean;
}

export interface AccountingTotals extends CallCounts {
  /** Cost of the priced entries, by currency. Incomplete when `unpricedModels` is not empty. */
  readonly cost: Readonly<Record<string, number>>;
  /** Models whose cost is unknown, sorted. */
  readonly unpricedModels: readonly string[];
}

/** Plain JSON: it goes into stats.json and comes back for merging. */
export interface AccountingSnapshot {
  readonly version: 1;
  /** Sorted by role, then model. */
  readonly entries: readonly RoleModelSnapshot[];
  readonly totals: AccountingTotals;
  /** By step, keys sorted (absent in snapshots written before steps were counted). */
  readonly steps?: Readonly<Record<string, StepCounts>>;
}

interface Cell {
  calls: number;
  cacheHits: number;
  promptTokens: number;
  completionTokens: number;
  cachedPromptTokens: number;
  cachedCompletionTokens: number;
  retries: number;
  readonly errors: Map<string, number>;
  readonly latency: LogHistogram;
  readonly replicas: Map<string, { attempts: number; answered: number; errors: Map<string, number> }>;
}

export class Accounting {
  private readonly prices: PriceTable;
  private readonly cells = new Map<string, { role: Role; model: string; cell: Cell }>();
  private readonly steps = new Map<string, StepCounts>();

  constructor(prices: PriceTable = {}) {
    this.prices = PriceTableSchema.parse(prices);
  }

  record(call: CallRecord): void {
    checkCount('promptTokens', call.promptTokens);
    checkCount('completionTokens', call.completionTokens);
    checkCount('attempts', call.attempts);
    const cell = this.cell(call.role, call.model);
    cell.calls += 1;
    if (call.cached) {
      cell.cacheHits += 1;
      cell.cachedPromptTokens += call.promptTokens;
      cell.cachedCompletionTokens += call.completionTokens;
      return;
    }
    cell.promptTokens += call.promptTokens;
    cell.completionTokens += call.completionTokens;
    cell.retries += Math.max(0, call.attempts - 1);
    cell.latency.record(call.latencyMs);
    if (call.step !== undefined) {
      const reported = call.serverCachedTokens !== undefined;
      if (reported) checkCount('serverCachedTokens', call.serverCachedTokens!);
      addStep(this.steps, call.step, {
        calls: 1,
        promptTokens: call.promptTokens,
        completionTokens: call.completionTokens,
        reportedCalls: reported ? 1 : 0,
        reportedPromptTokens: reported ? call.promptTokens : 0,
        serverCachedTokens: call.serverCachedTokens ?? 0,
      });
    }
  }

  /** A call that failed for good with this error code, after `attempts` HTTP attempts. */
  recordError(role: Role, model: string, code: string, attempts = 1): void {
    checkCount('attempts', attempts);
    const cell = this.cell(role, model);
    cell.errors.set(code, (cell.errors.get(code) ?? 0) + 1);
    cell.retries += Math.max(0, attempts - 1);
  }

  /** One HTTP attempt on one replica of a role: answered (no code) or failed with `code`. */
  recordAttempt(role: Role, model: string, baseUrl: string, code?: string): void {
    const replicas = this.cell(role, model).replicas;
    let tally = replicas.get(baseUrl);
    if (tally === undefined) {
      tally = { attempts: 0, answered: 0, errors: new Map() };
      replicas.set(baseUrl, tally);
    }
    tally.attempts += 1;
    if (code === undefined) tally.answered += 1;
    else tally.errors.set(code, (tally.errors.get(code) ?? 0) + 1);
  }

  snapshot(): AccountingSnapshot {
    const entries = [...this.cells.values()].map(({ role, model, cell }) => {
      const histogram = cell.latency.snapshot();
      const price = this.priceOf(model);
      const counts = {
        calls: cell.calls,
        cacheHits: cell.cacheHits,
        promptTokens: cell.promptTokens,
        completionTokens: cell.completionTokens,
        cachedPromptTokens: cell.cachedPromptTokens,
        cachedCompletionTokens: cell.cachedCompletionTokens,
        retries: cell.retries,
      };
      return {
        role,
        model,
        ...counts,
        errors: sortedRecord(cell.errors),
        ...(cell.replicas.size === 0 ? {} : { replicas: replicaRecord(cell.replicas) }),
        latency: cell.latency.summary(),
        latencyHistogram: histogram,
        ...priced(price, counts.promptTokens, counts.completionTokens),
      };
    });
    return { ...withTotals(entries), steps: sortedSteps(this.steps) };
  }

  /** The snapshot of the union of two runs; commutative. */
  static merge(a: AccountingSnapshot, b: AccountingSnapshot): AccountingSnapshot {
    for (const s of [a, b]) {
      if (s.version !== 1)
        throw new RangeError(`cannot merge accounting snapshot version ${String(s.version)}`);
    }
    const byKey = new Map<string, RoleModelSnapshot>();
    for (const entry of [...a.entries, ...b.entries]) {
      const key = cellKey(entry.role, entry.model);
      const seen = byKey.get(key);
      byKey.set(key, seen === undefined ? entry : mergeEntries(seen, entry));
    }
    const steps = new Map<string, StepCounts>();
    for (const s of [a, b])
      for (const [step, counts] of Object.entries(s.steps ?? {})) addStep(steps, step, counts);
    return { ...withTotals([...byKey.values()]), steps: sortedSteps(steps) };
  }

  private priceOf(model: string): Required<ModelPrice> | null {
    const price = Object.hasOwn(this.prices, model) ? this.prices[model] : undefined;
    if (price === undefined) return null;
    return {
      inputPerMTok: price.inputPerMTok,
      outputPerMTok: price.outputPerMTok,
      currency: price.currency ?? DEFAULT_CURRENCY,
    };
  }

  private cell(role: Role, model: string): Cell {
    const key = cellKey(role, model);
    let found = this.cells.get(key);
    if (found === undefined) {
      found = {
        role,
        model,
        cell: {
          calls: 0,
          cacheHits: 0,
          promptTokens: 0,
          completionTokens: 0,
          cachedPromptTokens: 0,
          cachedCompletionTokens: 0,
          retries: 0,
          errors: new Map(),
          latency: new LogHistogram(),
          replicas: new Map(),
        },
      };
      this.cells.set(key, found);
    }
    return found.cell;
  }
}

function replicaRecord(
  replicas: ReadonlyMap<string, { attempts: number; answered: number; errors: Map<string, number> }>,
): Record<string, ReplicaTally> {
  return Object.fromEntries(
    [...replicas.entries()]
      .sort(([x], [y]) => compare(x, y))
      .map(([url, t]) => [
        url,
        { attempts: t.attempts, answered: t.answered, errors: sortedRecord(t.errors) },
      ]),
  );
}

/** Replica tallies add up by base URL, as everything else here. */
function mergeReplicas(
  a: RoleModelSnapshot['replicas'],
  b: RoleModelSnapshot['replicas'],
): Pick<RoleModelSnapshot, 'replicas'> {
  if (a === undefined && b === undefined) return {};
  const sum = new Map<string, { attempts: number; answered: number; errors: Map<string, number> }>();
  for (const side of [a ?? {}, b ?? {}]) {
    for (const [url, t] of Object.entries(side)) {
      const into = sum.get(url) ?? { attempts: 0, answered: 0, errors: new Map<string, number>() };
      into.attempts += t.attempts;
      into.answered += t.answered;
      for (const [code, n] of Object.entries(t.errors))
        into.errors.set(code, (into.errors.get(code) ?? 0) + n);
      sum.set(url, into);
    }
  }
  return { replicas: replicaRecord(sum) };
}

type CostFields = Pick<RoleModelSnapshot, 'price' | 'cost' | 'currency' | 'unpriced'>;

function priced(
  price: Required<ModelPrice> | null,
  promptTokens: number,
  completionTokens: number,
): CostFields {
  if (price === null) return { price: null, cost: null, currency: null, unpriced: true };
  const cost = (promptTokens * price.inputPerMTok + completionTokens * price.outputPerMTok) / 1_000_000;
  return { price, cost, currency: price.currency, unpriced: false };
}

function mergeEntries(a: RoleModelSnapshot, b: RoleModelSnapshot): RoleModelSnapshot {
  const histogram = LogHistogram.merge(a.latencyHistogram, b.latencyHistogram);
  const promptTokens = a.promptTokens + b.promptTokens;
  const completionTokens = a.completionTokens + b.completionTokens;
  const errors = new Map(Object.entries(a.errors));
  for (const [code, n] of Object.entries(b.errors)) errors.set(code, (errors.get(code) ?? 0) + n);
  return {
    role: a.role,
    model: a.model,
    calls: a.calls + b.calls,
    cacheHits: a.cacheHits + b.cacheHits,
    promptTokens,
    completionTokens,
    cachedPromptTokens: a.cachedPromptTokens + b.cachedPromptTokens,
    cachedCompletionTokens: a.cachedCompletionTokens + b.cachedCompletionTokens,
    retries: a.retries + b.retries,
    errors: sortedRecord(errors),
    ...mergeReplicas(a.replicas, b.replicas),
    latency: LogHistogram.fromSnapshot(histogram).summary(),
    latencyHistogram: histogram,
    ...mergeCosts(a, b, promptTokens, completionTokens),
  };
}

/**
 * Same price: recomputed from the merged tokens, so halves merge to exactly the whole. Different prices in one
 * currency: the sum of the parts. An unpriced part, or two currencies, make the whole unpriced.
 */
function mergeCosts(
  a: CostFields,
  b: CostFields,
  promptTokens: number,
  completionTokens: number,
): CostFields {
  if (a.price !== null && b.price !== null && samePrice(a.price, b.price)) {
    return priced(a.price, promptTokens, completionTokens);
  }
  if (a.cost !== null && b.cost !== null && a.currency === b.currency) {
    return { price: null, cost: a.cost + b.cost, currency: a.currency, unpriced: false };
  }
  return { price: null, cost: null, currency: null, unpriced: true };
}

function samePrice(a: Required<ModelPrice>, b: Required<ModelPrice>): boolean {
  return (
    a.inputPerMTok === b.inputPerMTok && a.outputPerMTok === b.outputPerMTok && a.currency === b.currency
  );
}

type CountField =
  | 'calls'
  | 'cacheHits'
  | 'promptTokens'
  | 'completionTokens'
  | 'cachedPromptTokens'
  | 'cachedCompletionTokens'
  | 'retries';

function withTotals(unsorted: readonly RoleModelSnapshot[]): AccountingSnapshot {
  const entries = [...unsorted].sort((x, y) => compare(x.role, y.role) || compare(x.model, y.model));
  const errors = new Map<string, number>();
  const cost = new Map<string, number>();
  const unpriced = new Set<string>();
  const sum = (field: CountField): number => entries.reduce((total, e) => total + e[field], 0);
  for (const entry of entries) {
    for (const [code, n] of Object.entries(entry.errors)) errors.set(code, (errors.get(code) ?? 0) + n);
    if (entry.cost === null || entry.currency === null) unpriced.add(entry.model);
    else cost.set(entry.currency, (cost.get(entry.currency) ?? 0) + entry.cost);
  }
  return {
    version: 1,
    entries,
    totals: {
      calls: sum('calls'),
      cacheHits: sum('cacheHits'),
      promptTokens: sum('promptTokens'),
      completionTokens: sum('completionTokens'),
      cachedPromptTokens: sum('cachedPromptTokens'),
      cachedCompletionTokens: sum('cachedCompletionTokens'),
      retries: sum('retries'),
      errors: sortedRecord(errors),
      cost: sortedRecord(cost),
      unpricedModels: [...unpriced].sort(compare),
    },
  };
}

function addStep(steps: Map<string, StepCounts>, step: string, add: StepCounts): void {
  const seen = steps.get(step);
  steps.set(
    step,
    seen === undefined
      ? { ...add }
      : {
          calls: seen.calls + add.calls,
          promptTokens: seen.promptTokens + add.promptTokens,
          completionTokens: seen.completionTokens + add.completionTokens,
          reportedCalls: seen.reportedCalls + add.reportedCalls,
          reportedPromptTokens: seen.reportedPromptTokens + add.reportedPromptTokens,
          serverCachedTokens: seen.serverCachedTokens + add.serverCachedTokens,
        },
  );
}

function sortedSteps(steps: ReadonlyMap<string, StepCounts>): Record<string, StepCounts> {
  return Object.fromEntries([...steps.entries()].sort(([x], [y]) => compare(x, y)));
}

/** The steps' counts added up: what all steps sent and what the servers found cached. */
export function sumSteps(steps: Readonly<Record<string, StepCounts>>): StepCounts {
  const total = new Map<string, StepCounts>();
  for (const counts of Object.values(steps)) addStep(total, '', counts);
  return (
    total.get('') ?? {
      calls: 0,
      promptTokens: 0,
      completionTokens: 0,
      reportedCalls: 0,
      reportedPromptTokens: 0,
      serverCachedTokens: 0,
    }
  );
}

function cellKey(role: Role, model: string): string {
  return JSON.stringify([role, model]);
}

/** Code-unit order, independent of the locale, so snapshots are byte-identical across machines. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortedRecord(map: ReadonlyMap<string, number>): Record<string, number> {
  return Object.fromEntries([...map.entries()].sort(([x], [y]) => compare(x, y)));
}

function checkCount(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0)
    throw new RangeError(`accounting: ${name} must be >= 0, got ${value}`);
}
