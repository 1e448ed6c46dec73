import { Accounting, type AccountingSnapshot } from '../../llm/accounting.js';
import { LogHistogram } from '../../llm/histogram.js';
import { CONSTRAINT_TYPES } from '../../operators/constraint-tagger.js';
import { measureInstruction } from '../../operators/instruction-metrics.js';
import { countWords } from '../../operators/length-filter.js';
import { AirError } from '../../pipeline/errors.js';
import type { RunReport } from '../../pipeline/run.js';
import { increment, mergeCounts, mergeStageStats, type StageStats } from '../../pipeline/stats.js';
import {
  EXACT_DISTRIBUTIONS,
  LOG_DISTRIBUTIONS,
  STATS_VERSION,
  type ConstraintTypeCounts,
  type ExactDistributionName,
  type Funnel,
  type LogDistributionName,
  type RunStats,
  type StatsKind,
  type TimeBucket,
} from '../../schemas/stats.js';
import { ExactCounts, logDistribution } from './distributions.js';
import { hostOf } from './domain.js';

/** A row as the sink writes it: the output of airRow() or documentRow(), or a row read back from Parquet. */
export type StatsRow = Readonly<Record<string, unknown>>;

/** What the collector takes from the run at its end: a RunReport, or the same fields read from ledger.json. */
export type RunOutcome = Pick<RunReport, 'status' | 'wallMs' | 'stages' | 'totals'>;

export interface LlmUsageInput {
  readonly accounting: AccountingSnapshot;
  readonly cache?: { readonly hits: number; readonly misses: number };
  readonly promptVersion?: string;
}

/** One answered LLM call, for the calls-per-minute timeline (a subset of llm/accounting.ts CallRecord). */
export interface TimedCall {
  readonly latencyMs: number;
  readonly cached: boolean;
}

export interface StatsCollectorOptions {
  readonly kind: StatsKind;
  /** Epoch milliseconds, sampled once per row written and per call (tests inject a fake clock). */
  readonly clock?: () => number;
  /** Width of a timeline bucket (default one minute). */
  readonly bucketMs?: number;
  /**
   * `client`: the job passes every answered LLM call to `call()`, and those make the calls timeline.
   * `rows` (default): the calls listed on each row count at the time the row is written.
   */
  readonly callsFrom?: 'client' | 'rows';
  /** Whether rows are timed at all (false when recomputing from Parquet, which holds no times). */
  readonly timeline?: boolean;
}

export const DEFAULT_BUCKET_MS = 60_000;
/** Distinct hosts kept by name; past this, new hosts count as `other` (merges keep the most frequent). */
export const MAX_HOSTS = 10_000;
/** Distinct values kept per provenance field and per language. */
const MAX_VALUES = 64;

type MutableTypeCounts = { -readonly [K in keyof ConstraintTypeCounts]: number };
type MutableBucket = { -readonly [K in keyof TimeBucket]: TimeBucket[K] };

/**
 * Statistics of a run, fed while it streams: one `row()` per row written, the RunReport and the LLM accounting
 * at the end, `call()` per LLM call if the job wires it. Memory is bounded by the histograms' buckets, the
 * capped maps and one timeline bucket per minute of run time, never by the number of rows. Stats merge
 * (`mergeStats`) by adding every count, so the stats of two half-runs merge into the stats of the whole.
 */
export class StatsCollector {
  readonly kind: StatsKind;
  private readonly clock: () => number;
  private readonly bucketMs: number;
  private readonly timed: boolean;
  private callsFrom: RunStats['time']['callsFrom'];
  private origin: RunStats['origin'] = 'stream';
  private rows = 0;
  private startedAt: number | null;
  private finishedAt: number | null = null;
  private wallMs: number | null = null;
  private readonly buckets = new Map<number, MutableBucket>();
  private funnel: Funnel | null = null;
  private readonly logs = Object.fromEntries(
    LOG_DISTRIBUTIONS.map((name) => [name, new LogHistogram()]),
  ) as Record<LogDistributionName, LogHistogram>;
  private readonly exact = Object.fromEntries(
    EXACT_DISTRIBUTIONS.map((name) => [name, new ExactCounts()]),
  ) as Record<ExactDistributionName, ExactCounts>;
  private readonly complexityQuality: Record<string, number> = {};
  private readonly stopReasons: Record<string, number> = {};
  private readonly types = new Map<string, MutableTypeCounts>();
  private hosts = new Map<string, number>();
  private otherHosts = 0;
  private missingHosts = 0;
  private readonly languages: Record<string, number> = {};
  private readonly provenance = {
    configFingerprints: new Set<string>(),
    promptVersions: new Set<string>(),
    guidanceModels: new Set<string>(),
    studentModels: new Set<string>(),
  };
  private llm: RunStats['llm'] = null;
  private readonly rowCalls = new Accounting();
  /** Row-call accounting merged in from other stats (a snapshot cannot take new records). */
  private rowCallsMerged: AccountingSnapshot | undefined;

  constructor(options: StatsCollectorOptions) {
    this.kind = options.kind;
    this.clock = options.clock ?? Date.now;
    this.bucketMs = options.bucketMs ?? DEFAULT_BUCKET_MS;
    if (!Number.isInteger(this.bucketMs) || this.bucketMs <= 0) {
      throw new RangeError(`bucketMs must be a positive integer, got ${this.bucketMs}`);
    }
    this.timed = options.timeline ?? true;
    this.callsFrom = options.callsFrom ?? 'rows';
    this.startedAt = this.timed ? this.clock() : null;
  }

  /** Stats read back (stats.json) as a collector, to merge others into. */
  static from(stats: RunStats): StatsCollector {
    const collector = new StatsCollector({
      kind: stats.kind,
      bucketMs: stats.time.bucketMs,
      callsFrom: stats.time.callsFrom === 'client' ? 'client' : 'rows',
      timeline: false,
    });
    collector.add(stats);
    collector.origin = stats.origin;
    return collector;
  }

  /** Counts one written row and returns it, so it can wrap a sink's `toRow`. */
  row<R extends StatsRow>(row: R): R {
    this.rows += 1;
    const calls = Array.isArray(row.calls) ? (row.calls as unknown[]) : undefined;
    if (this.timed) {
      const bucket = this.bucket(this.clock());
      bucket.rows += 1;
      if (this.callsFrom === 'rows' && calls !== undefined) {
        for (const call of calls)
          if (isObject(call)) countCall(bucket, numberOf(call.latency_ms), call.cached);
      }
    }
    this.words(row);
    this.structure(row);
    if (calls !== undefined) this.callsOf(calls);
    this.sourceOf(row);
    return row;
  }

  /** One answered LLM call (only with `callsFrom: 'client'`): the calls and latency timeline. */
  call(record: TimedCall): void {
    if (!this.timed || this.callsFrom !== 'client') return;
    countCall(this.bucket(this.clock()), record.latencyMs, record.cached);
  }

  /** The ledger of the run: the funnel, and the refine stage's counts per constraint type. */
  runReport(outcome: RunOutcome): void {
    const funnel: Funnel = {
      status: { completed: 0, interrupted: 0, failed: 0, [outcome.status]: 1 },
      read: outcome.totals.read,
      written: outcome.totals.written,
      rowsWritten: outcome.totals.rowsWritten,
      abandoned: outcome.totals.abandoned,
      dropped: { ...outcome.totals.dropped },
      failed: { ...outcome.totals.failed },
      stages: outcome.stages.map(stageOf),
    };
    this.funnel = this.funnel === null ? funnel : mergeFunnels(this.funnel, funnel);
    this.wallMs = (this.wallMs ?? 0) + outcome.wallMs;
    const refine = outcome.stages.find((s) => s.name === 'refine');
    for (const [key, n] of Object.entries(refine?.counters ?? {})) {
      const [what, type] = key.split(':', 2);
      if (type === undefined) continue;
      if (what === 'type_chosen') this.typeCounts(type).chosen += n;
      else if (what === 'type_gated') this.typeCounts(type).gated += n;
      else if (what === 'type_duplicate') this.typeCounts(type).duplicate += n;
    }
  }

  /** The LLM client's accounting snapshot and cache counts at the end of the run. */
  llmUsage(usage: LlmUsageInput): void {
    const cache = usage.cache === undefined ? null : { hits: usage.cache.hits, misses: usage.cache.misses };
    this.llm = mergeLlm(this.llm, { accounting: usage.accounting, cache });
    if (usage.promptVersion !== undefined && usage.promptVersion !== '') {
      addCapped(this.provenance.promptVersions, usage.promptVersion);
    }
    for (const entry of usage.accounting.entries) {
      if (entry.role === 'guidance') addCapped(this.provenance.guidanceModels, entry.model);
      if (entry.role === 'student') addCapped(this.provenance.studentModels, entry.model);
    }
  }

  /** A config fingerprint the rows may not carry (documents rows have no fingerprint column). */
  noteConfig(fingerprint: string): void {
    addCapped(this.provenance.configFingerprints, fingerprint);
  }

  /** The run's start and end when known from elsewhere (ledger.json) rather than from the clock. */
  span(startedAt: number, finishedAt: number): void {
    this.startedAt = startedAt;
    this.finishedAt = finishedAt;
  }

  /** Marks the end of the run (the clock's time); call once, after the last row. */
  finish(): void {
    if (!this.timed) return;
    this.finishedAt = this.clock();
    if (this.wallMs === null && this.startedAt !== null) this.wallMs = this.finishedAt - this.startedAt;
  }

  /** Adds other stats (of another shard, process or run) to these. */
  add(other: RunStats): this {
    if (other.kind !== this.kind) {
      throw new AirError(
        'AIR_USAGE',
        `cannot merge stats of ${other.kind} rows into stats of ${this.kind} rows`,
      );
    }
    this.addTime(other.time); // first: it refuses timelines of another bucket width before anything changes
    this.origin = 'merged';
    this.rows += other.rows;
    this.addProvenance(other.provenance);
    if (other.funnel !== null) {
      this.funnel =
        this.funnel === null ? structuredClone(other.funnel) : mergeFunnels(this.funnel, other.funnel);
    }
    for (const name of LOG_DISTRIBUTIONS) this.logs[name].add(other.distributions[name].histogram);
    for (const name of EXACT_DISTRIBUTIONS) this.exact[name].add(other.distributions[name]);
    mergeCounts(this.complexityQuality, other.complexityQuality);
    mergeCounts(this.stopReasons, other.stopReasons);
    for (const [type, c] of Object.entries(other.constraintTypes)) {
      const mine = this.typeCounts(type);
      for (const key of Object.keys(mine) as Array<keyof MutableTypeCounts>) mine[key] += c[key];
    }
    for (const [host, n] of Object.entries(other.domains.hosts))
      this.hosts.set(host, (this.hosts.get(host) ?? 0) + n);
    this.otherHosts += other.domains.other;
    this.missingHosts += other.domains.missing;
    this.capHosts();
    this.llm = other.llm === null ? this.llm : mergeLlm(this.llm, other.llm);
    this.rowCallsMerged =
      this.rowCallsMerged === undefined
        ? other.rowCalls
        : Accounting.merge(this.rowCallsMerged, other.rowCalls);
    return this;
  }

  snapshot(): RunStats {
    const distributions = {
      ...Object.fromEntries(LOG_DISTRIBUTIONS.map((name) => [name, logDistribution(this.logs[name])])),
      ...Object.fromEntries(EXACT_DISTRIBUTIONS.map((name) => [name, this.exact[name].distribution()])),
    } as RunStats['distributions'];
    const rowCalls =
      this.rowCallsMerged === undefined
        ? this.rowCalls.snapshot()
        : Accounting.merge(this.rowCalls.snapshot(), this.rowCallsMerged);
    for (const type of CONSTRAINT_TYPES) this.typeCounts(type.id);
    return {
      air: 'stats',
      version: STATS_VERSION,
      kind: this.kind,
      origin: this.origin,
      rows: this.rows,
      provenance: {
        configFingerprints: sortedValues(this.provenance.configFingerprints),
        promptVersions: sortedValues(this.provenance.promptVersions),
        guidanceModels: sortedValues(this.provenance.guidanceModels),
        studentModels: sortedValues(this.provenance.studentModels),
        languages: sortedRecord(Object.entries(this.languages)),
      },
      time: this.timeSnapshot(),
      funnel: this.funnel === null ? null : structuredClone(this.funnel),
      distributions,
      complexityQuality: sortedRecord(Object.entries(this.complexityQuality)),
      stopReasons: sortedRecord(Object.entries(this.stopReasons)),
      constraintTypes: Object.fromEntries(
        [...this.types.entries()].sort(([x], [y]) => compare(x, y)).map(([type, c]) => [type, { ...c }]),
      ),
      domains: {
        hosts: sortedRecord([...this.hosts.entries()]),
        other: this.otherHosts,
        missing: this.missingHosts,
      },
      llm: this.llm === null ? null : structuredClone(this.llm),
      rowCalls,
    };
  }

  private words(row: StatsRow): void {
    const document = integerOf(row.document_words) ?? wordsOf(row.text);
    if (document !== undefined) this.logs.documentWords.record(document);
    const initial = wordsOf(row.initial_instruction);
    if (initial !== undefined) this.logs.initialInstructionWords.record(initial);
    const instruction = integerOf(row.instruction_words) ?? wordsOf(row.instruction);
    if (instruction !== undefined) this.logs.instructionWords.record(instruction);
    const output = integerOf(row.output_words) ?? wordsOf(row.output);
    if (output !== undefined) this.logs.outputWords.record(output);
  }

  private structure(row: StatsRow): void {
    if (Array.isArray(row.constraints)) {
      this.exact.constraintsPerInstruction.record(row.constraints.length);
      for (const c of row.constraints as unknown[]) {
        if (isObject(c) && typeof c.type === 'string') this.typeCounts(c.type).merged += 1;
      }
    }
    // Rows of other datasets have no tagger column: tag them as `air score` does.
    const tagged = Array.isArray(row.tagged_types)
      ? (row.tagged_types as unknown[]).filter((t): t is string => typeof t === 'string')
      : typeof row.instruction === 'string'
        ? measureInstruction(row.instruction, null).constraintTypes
        : undefined;
    if (tagged !== undefined) {
      this.exact.taggedTypes.record(tagged.length);
      for (const type of tagged) this.typeCounts(type).tagged += 1;
    }
    for (const [name, column] of [
      ['depth', 'depth'],
      ['depthReached', 'depth_reached'],
      ['initialScore', 'initial_score'],
      ['complexity', 'complexity'],
      ['quality', 'quality'],
    ] as const) {
      const value = integerOf(row[column]);
      if (value !== undefined) this.exact[name].record(value);
    }
    const complexity = integerOf(row.complexity);
    const quality = integerOf(row.quality);
    if (complexity !== undefined && quality !== undefined) {
      increment(this.complexityQuality, `${complexity},${quality}`);
    }
    if (typeof row.stop_reason === 'string') increment(this.stopReasons, row.stop_reason);
  }

  private callsOf(calls: readonly unknown[]): void {
    this.exact.callsPerRow.record(calls.length);
    for (const call of calls) {
      if (!isObject(call) || typeof call.role !== 'string' || typeof call.model !== 'string') continue;
      const cached = call.cached === true;
      this.rowCalls.record({
        role: call.role,
        model: call.model,
        promptTokens: Math.max(0, integerOf(call.prompt_tokens) ?? 0),
        completionTokens: Math.max(0, integerOf(call.completion_tokens) ?? 0),
        latencyMs: Math.max(0, numberOf(call.latency_ms) ?? 0),
        cached,
        attempts: Math.max(0, integerOf(call.attempts) ?? (cached ? 0 : 1)),
        step: typeof call.step === 'string' ? call.step : undefined,
      });
    }
  }

  private sourceOf(row: StatsRow): void {
    if ('url' in row) {
      const host = typeof row.url === 'string' ? hostOf(row.url) : undefined;
      if (host === undefined) this.missingHosts += 1;
      else if (this.hosts.has(host) || this.hosts.size < MAX_HOSTS) {
        this.hosts.set(host, (this.hosts.get(host) ?? 0) + 1);
      } else this.otherHosts += 1;
    }
    if (typeof row.language === 'string') addCappedCount(this.languages, row.language, 1);
    const p = this.provenance;
    if (typeof row.config_fingerprint === 'string') addCapped(p.configFingerprints, row.config_fingerprint);
    if (typeof row.prompt_version === 'string') addCapped(p.promptVersions, row.prompt_version);
    if (typeof row.guidance_model === 'string') addCapped(p.guidanceModels, row.guidance_model);
    if (typeof row.student_model === 'string') addCapped(p.studentModels, row.student_model);
  }

  private addProvenance(other: RunStats['provenance']): void {
    const p = this.provenance;
    for (const v of other.configFingerprints) addCapped(p.configFingerprints, v);
    for (const v of other.promptVersions) addCapped(p.promptVersions, v);
    for (const v of other.guidanceModels) addCapped(p.guidanceModels, v);
    for (const v of other.studentModels) addCapped(p.studentModels, v);
    for (const [language, n] of Object.entries(other.languages)) addCappedCount(this.languages, language, n);
  }

  private addTime(other: RunStats['time']): void {
    const merged = mergeTime(this.timeSnapshot(), other);
    this.startedAt = merged.startedAt;
    this.finishedAt = merged.finishedAt;
    this.wallMs = merged.wallMs;
    this.callsFrom = merged.callsFrom;
    this.buckets.clear();
    for (const b of merged.buckets) this.buckets.set(b.at, { ...b });
  }

  private timeSnapshot(): RunStats['time'] {
    return {
      bucketMs: this.bucketMs,
      startedAt: this.startedAt,
      finishedAt: this.finishedAt,
      wallMs: this.wallMs,
      callsFrom: this.callsFrom,
      buckets: [...this.buckets.values()].sort((x, y) => x.at - y.at).map((b) => ({ ...b })),
    };
  }

  /** Keeps the MAX_HOSTS most frequent hosts (ties by name) and counts the rest as `other`. */
  private capHosts(): void {
    if (this.hosts.size <= MAX_HOSTS) return;
    const ranked = [...this.hosts.entries()].sort(([a, x], [b, y]) => y - x || compare(a, b));
    for (const [, n] of ranked.slice(MAX_HOSTS)) this.otherHosts += n;
    this.hosts = new Map(ranked.slice(0, MAX_HOSTS));
  }

  private typeCounts(type: string): MutableTypeCounts {
    let c = this.types.get(type);
    if (c === undefined) {
      c = { chosen: 0, gated: 0, duplicate: 0, merged: 0, tagged: 0 };
      this.types.set(type, c);
    }
    return c;
  }

  private bucket(now: number): MutableBucket {
    return this.bucketAt(Math.floor(now / this.bucketMs) * this.bucketMs);
  }

  private bucketAt(at: number): MutableBucket {
    let b = this.buckets.get(at);
    if (b === undefined) {
      b = { at, rows: 0, calls: 0, latencyMsSum: 0, latencyCount: 0 };
      this.buckets.set(at, b);
    }
    return b;
  }
}

/** The stats of the union of two runs (or shards, or processes). */
export function mergeStats(a: RunStats, b: RunStats): RunStats {
  return StatsCollector.from(a).add(b).snapshot();
}

/**
 * Two timelines as one: buckets add by their wall-clock start (processes running at once add up), the span
 * covers both, and wall times add (the time the runs took, not the span, which may include a pause).
 */
export function mergeTime(a: RunStats['time'], b: RunStats['time']): RunStats['time'] {
  if (a.bucketMs !== b.bucketMs) {
    throw new AirError(
      'AIR_USAGE',
      `cannot merge timelines of ${a.bucketMs} ms and ${b.bucketMs} ms buckets`,
    );
  }
  const buckets = new Map<number, MutableBucket>();
  for (const bucket of [...a.buckets, ...b.buckets]) {
    const mine = buckets.get(bucket.at);
    if (mine === undefined) buckets.set(bucket.at, { ...bucket });
    else {
      mine.rows += bucket.rows;
      mine.calls += bucket.calls;
      mine.latencyMsSum += bucket.latencyMsSum;
      mine.latencyCount += bucket.latencyCount;
    }
  }
  const pick = (f: (x: number, y: number) => number, x: number | null, y: number | null): number | null =>
    x === null ? y : y === null ? x : f(x, y);
  const callsFrom =
    a.buckets.length === 0
      ? b.callsFrom
      : b.buckets.length === 0 || a.callsFrom === b.callsFrom
        ? a.callsFrom
        : 'mixed';
  return {
    bucketMs: a.bucketMs,
    startedAt: pick(Math.min, a.startedAt, b.startedAt),
    finishedAt: pick(Math.max, a.finishedAt, b.finishedAt),
    wallMs: pick((x, y) => x + y, a.wallMs, b.wallMs),
    callsFrom,
    buckets: [...buckets.values()].sort((x, y) => x.at - y.at),
  };
}

function countCall(bucket: MutableBucket, latencyMs: number | undefined, cached: unknown): void {
  bucket.calls += 1;
  if (cached === true || latencyMs === undefined || !(latencyMs >= 0)) return;
  bucket.latencyMsSum += latencyMs;
  bucket.latencyCount += 1;
}

/** The StageStats fields stats.json keeps (a copy: the run's own objects stay its own). */
function stageOf(s: StageStats): StageStats {
  return {
    name: s.name,
    in: s.in,
    passed: s.passed,
    out: s.out,
    dropped: { ...s.dropped },
    failed: { ...s.failed },
    busyMs: s.busyMs,
    counters: { ...s.counters },
  };
}

function mergeFunnels(a: Funnel, b: Funnel): Funnel {
  const stages: StageStats[] = a.stages.map((s) => structuredClone(s));
  for (const s of b.stages) {
    const i = stages.findIndex((t) => t.name === s.name);
    if (i === -1) stages.push(structuredClone(s));
    else stages[i] = mergeStageStats(stages[i]!, s);
  }
  const dropped = { ...a.dropped };
  const failed = { ...a.failed };
  mergeCounts(dropped, b.dropped);
  mergeCounts(failed, b.failed);
  return {
    status: {
      completed: a.status.completed + b.status.completed,
      interrupted: a.status.interrupted + b.status.interrupted,
      failed: a.status.failed + b.status.failed,
    },
    read: a.read + b.read,
    written: a.written + b.written,
    rowsWritten: a.rowsWritten + b.rowsWritten,
    abandoned: a.abandoned + b.abandoned,
    dropped: sortedRecord(Object.entries(dropped)),
    failed: sortedRecord(Object.entries(failed)),
    stages,
  };
}

function mergeLlm(a: RunStats['llm'], b: NonNullable<RunStats['llm']>): NonNullable<RunStats['llm']> {
  if (a === null) return structuredClone(b);
  const cache =
    a.cache === null && b.cache === null
      ? null
      : {
          hits: (a.cache?.hits ?? 0) + (b.cache?.hits ?? 0),
          misses: (a.cache?.misses ?? 0) + (b.cache?.misses ?? 0),
        };
  return { accounting: Accounting.merge(a.accounting, b.accounting), cache };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** A finite number (int64 columns arrive from DuckDB as bigint). */
function numberOf(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'bigint') return Number(value);
  return undefined;
}

function integerOf(value: unknown): number | undefined {
  const n = numberOf(value);
  return n !== undefined && Number.isInteger(n) && n >= 0 ? n : undefined;
}

function wordsOf(value: unknown): number | undefined {
  return typeof value === 'string' ? countWords(value) : undefined;
}

function addCapped(set: Set<string>, value: string): void {
  if (set.size < MAX_VALUES || set.has(value)) set.add(value);
}

function addCappedCount(map: Record<string, number>, key: string, n: number): void {
  if (key in map || Object.keys(map).length < MAX_VALUES) increment(map, key, n);
  else increment(map, '(other)', n);
}

/** Code-unit order, independent of the locale, so stats files are byte-identical across machines. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortedValues(set: ReadonlySet<string>): string[] {
  return [...set].sort(compare);
}

function sortedRecord(entries: ReadonlyArray<readonly [string, number]>): Record<string, number> {
  return Object.fromEntries([...entries].sort(([x], [y]) => compare(x, y)));
}
