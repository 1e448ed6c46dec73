/**
 * The response cache: answers of chat completions, addressed by a hash of the request that produced them.
 *
 * The key is the SHA-256 of a canonical JSON of exactly the fields that shape the answer (model, messages,
 * sampling, response schema, attempt index). Fields are picked one by one, never spread, so an API key, a base
 * URL or headers lying next to them cannot reach the key or the stored row, whatever object the caller passes.
 *
 * Two stores share one interface: `SqliteResponseCache` (a file in the run's output folder, so a rerun or a
 * resumed run answers from it) and `MemoryResponseCache` (runs without an output folder).
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { AirError } from '../pipeline/errors.js';
import type { ChatCompletion, ChatMessage, FinishReason, JsonSchema, Sampling } from './types.js';

/** What identifies a request. Extra properties on these objects are ignored, never hashed or stored. */
export interface CacheKeyInput {
  /** The model name sent in the request (not the one the server reports back). */
  readonly model: string;
  readonly messages: readonly ChatMessage[];
  readonly sampling?: Sampling;
  readonly schema?: { readonly name: string; readonly schema: JsonSchema } | null;
  /** Index of a deliberate re-sample of the same request; 0 (the default) for the first. */
  readonly attempt?: number;
}

/** A cached answer: the completion plus when and how fast it was first produced. */
export interface CachedCompletion extends ChatCompletion {
  /** When the original call finished, in ms since the epoch. */
  readonly createdAtMs: number;
  /** Wall time of the original call. A hit costs no latency; this is kept for reports. */
  readonly latencyMs: number;
}

/** What `put` takes: `createdAtMs` defaults to now. */
export type CacheEntry = ChatCompletion & { readonly latencyMs: number; readonly createdAtMs?: number };

export interface PutOptions {
  /**
   * Also cache a reply cut at max_tokens (finish reason `length`). Off by default: a truncated reply is
   * usually a failure to retry differently, and caching it would replay the failure on every rerun.
   */
  readonly allowTruncated?: boolean;
}

export interface CacheStats {
  /** `get` calls that found an entry, since this instance opened. */
  readonly hits: number;
  /** `get` calls that found nothing, since this instance opened. */
  readonly misses: number;
  /** New entries this instance stored. */
  readonly writes: number;
  /** `put` calls refused because the answer was not complete (see `isCacheable`). */
  readonly rejected: number;
  /** Entries in the store now (for SQLite: the file, including other instances' writes). */
  readonly entries: number;
}

export interface ResponseCache {
  key(input: CacheKeyInput): string;
  get(key: string): CachedCompletion | undefined;
  /**
   * Stores a complete answer and returns true; returns false, storing nothing, when it is not cacheable or
   * the key already has an entry (the first answer wins, so a key never changes its answer).
   * The caller stores only answers it accepted (parsed and schema-valid when a schema was asked for).
   */
  put(key: string, entry: CacheEntry, options?: PutOptions): boolean;
  stats(): CacheStats;
  close(): void;
}

/** The key format's version: bump it when the canonical payload changes, so old entries stop matching. */
const KEY_VERSION = 1;

/** SHA-256 (hex) of the canonical request; the same for any order of object keys. */
export function cacheKey(input: CacheKeyInput): string {
  const attempt = input.attempt ?? 0;
  if (!Number.isSafeInteger(attempt) || attempt < 0) {
    throw new RangeError(`cache key: attempt must be an integer >= 0, got ${attempt}`);
  }
  const sampling = input.sampling ?? {};
  const payload = {
    v: KEY_VERSION,
    model: input.model,
    messages: input.messages.map((m) => ({ role: m.role, content: m.content })),
    // null marks "unset" (the endpoint's default), which is not the same request as any explicit value.
    sampling: {
      temperature: sampling.temperature ?? null,
      top_p: sampling.top_p ?? null,
      max_tokens: sampling.max_tokens ?? null,
      seed: sampling.seed ?? null,
    },
    schema: input.schema == null ? null : { name: input.schema.name, schema: input.schema.schema },
    attempt,
  };
  return createHash('sha256').update(canonicalJson(payload), 'utf8').digest('hex');
}

/** JSON with object keys sorted at every depth; throws on values JSON cannot represent faithfully. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`canonical JSON: non-finite number ${value}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      throw new TypeError('canonical JSON: only plain objects are allowed');
    }
    const record = value as Record<string, unknown>;
    const fields = Object.keys(record)
      .filter((k) => record[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k])}`);
    return `{${fields.join(',')}}`;
  }
  throw new TypeError(`canonical JSON: cannot encode a ${typeof value}`);
}

/** Only finished answers are cached: `stop`, or `length` when the caller opts in. */
export function isCacheable(finishReason: FinishReason, options: PutOptions = {}): boolean {
  return finishReason === 'stop' || (finishReason === 'length' && options.allowTruncated === true);
}

const FINISH_REASONS: ReadonlySet<string> = new Set<FinishReason>([
  'stop',
  'length',
  'content_filter',
  'tool_calls',
  'unknown',
]);

/** Copies exactly the stored fields, so nothing else the caller's object carries is kept. */
function toCached(entry: CacheEntry): CachedCompletion {
  return Object.freeze({
    text: entry.text,
    finishReason: entry.finishReason,
    usage: Object.freeze({
      promptTokens: entry.usage.promptTokens,
      completionTokens: entry.usage.completionTokens,
    }),
    model: entry.model,
    createdAtMs: entry.createdAtMs ?? Date.now(),
    latencyMs: entry.latencyMs,
  });
}

/** Counters shared by both stores. */
abstract class CountingCache implements ResponseCache {
  protected hits = 0;
  protected misses = 0;
  protected writes = 0;
  protected rejected = 0;

  key(input: CacheKeyInput): string {
    return cacheKey(input);
  }

  get(key: string): CachedCompletion | undefined {
    const found = this.read(key);
    if (found === undefined) this.misses += 1;
    else this.hits += 1;
    return found;
  }

  put(key: string, entry: CacheEntry, options: PutOptions = {}): boolean {
    if (!isCacheable(entry.finishReason, options)) {
      this.rejected += 1;
      return false;
    }
    const stored = this.write(key, toCached(entry));
    if (stored) this.writes += 1;
    return stored;
  }

  stats(): CacheStats {
    return {
      hits: this.hits,
      misses: this.misses,
      writes: this.writes,
      rejected: this.rejected,
      entries: this.size(),
    };
  }

  abstract close(): void;
  protected abstract read(key: string): CachedCompletion | undefined;
  /** Stores the entry unless the key has one; true when stored. */
  protected abstract write(key: string, value: CachedCompletion): boolean;
  protected abstract size(): number;
}

export interface MemoryCacheOptions {
  /** Evict the least recently used entry beyond this many; unbounded when unset. */
  readonly maxEntries?: number;
}

/** The cache of a run without an output folder: lives and dies with the process. */
export class MemoryResponseCache extends CountingCache {
  private readonly entries = new Map<string, CachedCompletion>();
  private readonly maxEntries: number;

  constructor(options: MemoryCacheOptions = {}) {
    super();
    this.maxEntries = options.maxEntries ?? Infinity;
    if (!(this.maxEntries >= 1)) throw new RangeError(`maxEntries must be >= 1, got ${options.maxEntries}`);
  }

  /** Drops every entry: the memory goes with it. */
  close(): void {
    this.entries.clear();
  }

  protected read(key: string): CachedCompletion | undefined {
    const found = this.entries.get(key);
    if (found !== undefined) {
      // Re-insert to mark it most recently used (a Map iterates in insertion order).
      this.entries.delete(key);
      this.entries.set(key, found);
    }
    return found;
  }

  protected write(key: string, value: CachedCompletion): boolean {
    if (this.entries.has(key)) return false;
    this.entries.set(key, value);
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done !== true) this.entries.delete(oldest.value);
    }
    return true;
  }

  protected size(): number {
    return this.entries.size;
  }
}

export interface SqliteCacheOptions {
  /**
   * `normal` (default): with WAL, a `put` that returned is in the WAL file in the OS's hands, so it survives
   * the process being killed (SIGKILL, OOM killer, crash); an OS crash or power cut may lose the last
   * commits, which a cache can afford: those calls are simply made again. `full` fsyncs the WAL on every
   * `put` and survives power loss too, at the price of one fsync per answer.
   */
  readonly synchronous?: 'normal' | 'full';
  /** Open an existing cache for reading only (a worker thread next to the run's single writer). */
  readonly readonly?: boolean;
  /** How long a statement waits for another connection's lock before failing. */
  readonly busyTimeoutMs?: number;
}

/** The stored table's layout version, kept in `PRAGMA user_version`. */
const SCHEMA_VERSION = 1;

interface Row {
  text: string;
  finish_reason: string;
  prompt_tokens: number;
  completion_tokens: number;
  model: string;
  created_at_ms: number;
  latency_ms: number;
}

/** The error code of a cache file that cannot be opened or is not an air cache. */
export const CACHE_ERROR_CODE = 'AIR_LLM_CACHE_INVALID';

/**
 * A cache in one SQLite file, in WAL mode.
 *
 * Threads: a better-sqlite3 connection belongs to the thread that opened it, so each thread opens its own
 * instance on the file. WAL lets any number of readers run alongside one writer without blocking each other;
 * writers take turns (a second writer waits up to `busyTimeoutMs`), so the run keeps a single writing
 * instance and worker threads open `{ readonly: true }` ones. A reader sees every commit made before its
 * read, including other instances' and processes'.
 */
export class SqliteResponseCache extends CountingCache {
  readonly file: string;
  private readonly db: Database.Database;
  private readonly selectRow: Database.Statement<[string], Row>;
  private readonly insertRow: Database.Statement<[Row & { key: string }]> | undefined;
  private readonly countRows: Database.Statement<[], { n: number }>;

  private constructor(file: string, db: Database.Database, readonly: boolean) {
    super();
    this.file = file;
    this.db = db;
    this.selectRow = db.prepare<[string], Row>(
      `SELECT text, finish_reason, prompt_tokens, completion_tokens, model, created_at_ms, latency_ms
       FROM responses WHERE key = ?`,
    );
    this.insertRow = readonly
      ? undefined
      : db.prepare<[Row & { key: string }]>(
          `INSERT INTO responses (key, text, finish_reason, prompt_tokens, completion_tokens, model,
                                  created_at_ms, latency_ms)
           VALUES (@key, @text, @finish_reason, @prompt_tokens, @completion_tokens, @model,
                   @created_at_ms, @latency_ms)
           ON CONFLICT (key) DO NOTHING`,
        );
    this.countRows = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM responses');
  }

  /** Opens (creating when needed, with its folder) the cache file; throws AIR_LLM_CACHE_INVALID otherwise. */
  static open(file: string, options: SqliteCacheOptions = {}): SqliteResponseCache {
    const readonly = options.readonly ?? false;
    let db: Database.Database | undefined;
    try {
      if (!readonly) mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      db = new Database(file, { readonly, fileMustExist: readonly });
      db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(options.busyTimeoutMs ?? 5000))}`);
      if (!readonly) {
        const mode = db.pragma('journal_mode = WAL', { simple: true });
        if (mode !== 'wal')
          throw new Error(`the file system does not support WAL (journal mode ${String(mode)})`);
        db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
        migrate(db);
      }
      const version = db.pragma('user_version', { simple: true });
      if (version !== SCHEMA_VERSION) {
        throw new Error(
          `not an air response cache of version ${SCHEMA_VERSION} (user_version ${String(version)})`,
        );
      }
      return new SqliteResponseCache(file, db, readonly);
    } catch (error) {
      db?.close();
      const detail = error instanceof Error ? error.message : String(error);
      throw new AirError(CACHE_ERROR_CODE, `${file}: cannot open the response cache: ${detail}`, {
        cause: error,
      });
    }
  }

  close(): void {
    // The last connection to close checkpoints the WAL into the main file.
    if (this.db.open) this.db.close();
  }

  /**
   * Adds every answer of another air cache file to this one (`air merge --cache` unions the ranks' caches); an
   * answer already here for the same key is kept. The source is checked as an air cache first and read in place.
   */
  absorb(file: string): { rows: number; added: number } {
    if (this.insertRow === undefined)
      throw new Error(`${this.file}: the response cache was opened read-only`);
    const source = SqliteResponseCache.open(file, { readonly: true });
    const rows = source.size();
    source.close();
    this.db.prepare('ATTACH DATABASE ? AS source').run(file);
    try {
      const added = this.db
        .prepare(
          `INSERT INTO main.responses SELECT key, text, finish_reason, prompt_tokens, completion_tokens, model,
                  created_at_ms, latency_ms FROM source.responses WHERE true ON CONFLICT (key) DO NOTHING`,
        )
        .run().changes;
      return { rows, added };
    } finally {
      this.db.exec('DETACH DATABASE source');
    }
  }

  protected read(key: string): CachedCompletion | undefined {
    const row = this.selectRow.get(key);
    if (row === undefined) return undefined;
    return Object.freeze({
      text: row.text,
      finishReason: FINISH_REASONS.has(row.finish_reason) ? (row.finish_reason as FinishReason) : 'unknown',
      usage: Object.freeze({ promptTokens: row.prompt_tokens, completionTokens: row.completion_tokens }),
      model: row.model,
      createdAtMs: row.created_at_ms,
      latencyMs: row.latency_ms,
    });
  }

  protected write(key: string, value: CachedCompletion): boolean {
    if (this.insertRow === undefined)
      throw new Error(`${this.file}: the response cache was opened read-only`);
    // One auto-committed statement: when it returns, the row is committed to the WAL.
    const result = this.insertRow.run({
      key,
      text: value.text,
      finish_reason: value.finishReason,
      prompt_tokens: value.usage.promptTokens,
      completion_tokens: value.usage.completionTokens,
      model: value.model,
      created_at_ms: value.createdAtMs,
      latency_ms: value.latencyMs,
    });
    return result.changes === 1;
  }

  protected size(): number {
    return this.countRows.get()?.n ?? 0;
  }
}

/** Creates the table in a new file; a file of another layout is left alone for the version check. */
function migrate(db: Database.Database): void {
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true });
    const tables = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM sqlite_schema').get()?.n ?? 0;
    if (version !== 0 || tables !== 0) return;
    db.exec(`CREATE TABLE responses (
               key TEXT PRIMARY KEY NOT NULL,
               text TEXT NOT NULL,
               finish_reason TEXT NOT NULL,
               prompt_tokens INTEGER NOT NULL,
               completion_tokens INTEGER NOT NULL,
               model TEXT NOT NULL,
               created_at_ms INTEGER NOT NULL,
               latency_ms REAL NOT NULL
             ) WITHOUT ROWID`);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

/** The run's cache: a SQLite file when the run has one, else memory. */
export function openResponseCache(
  file: string | undefined,
  options: SqliteCacheOptions & MemoryCacheOptions = {},
): ResponseCache {
  return file === undefined ? new MemoryResponseCache(options) : SqliteResponseCache.open(file, options);
}
