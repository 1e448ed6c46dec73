import { mkdirSync } from 'node:fs';
import { filterStages } from '../stages/document-stages.js';
import { parquetSource } from '../stages/source.js';
import type { DuckDBInstance } from '@duckdb/node-api';
import { bandKeysInto, sketchValue } from '../../operators/dedupe/lsh.js';
import { signatureAt } from '../../operators/dedupe/minhash.js';
import {
  createMinHashPool,
  DEFAULT_NEAR_DEDUPE,
  signTexts,
  type SignaturePool,
} from '../../operators/dedupe/near-dedupe.js';
import { hash64Into, exactKeyInto } from '../../operators/dedupe/normalize.js';
import { openDuckDB } from '../../pipeline/io/duckdb.js';
import type { Shard } from '../../pipeline/io/shards.js';
import type { Ticket } from '../../pipeline/ledger.js';
import { emit, type BatchOperator, type Outcome } from '../../pipeline/operator.js';
import { pipeline, type RunReport } from '../../pipeline/run.js';
import type { Sink } from '../../pipeline/source.js';
import type { Document } from '../../schemas/documents.js';
import type { RunConfig } from '../config.js';
import { GlobalDedupeError } from './errors.js';
import { KeyFileWriter, keysDir, removeKeyFiles, type DedupeSettings, type KeyFileMeta } from './key-file.js';

/** The parts of a run config the keys pass reads: what decides which rows reach dedupe, and dedupe's own. */
export type DedupeKeysConfig = Pick<RunConfig, 'source' | 'filter' | 'sample' | 'dedupe' | 'engine'>;

/** A shard of the plan and its index there (which names its key files). */
export interface PlannedShard {
  readonly index: number;
  readonly shard: Shard;
}

export interface WriteDedupeKeysOptions {
  /** The shared folder: keys go to `<root>/dedupe/keys/`. */
  readonly root: string;
  /** This rank's shards; read in plan order whatever order they are given in. */
  readonly shards: readonly PlannedShard[];
  readonly config: DedupeKeysConfig;
  /** DuckDB to read with (default: one opened, and closed, for the pass). */
  readonly db?: DuckDBInstance;
  /** Signature workers (default: a pool of config.engine.workerThreads, closed after the pass). */
  readonly pool?: SignaturePool;
  readonly signal?: AbortSignal;
  readonly log?: (line: string) => void;
}

export interface KeysPassResult {
  readonly shards: readonly KeyFileMeta[];
  /** The engine's report of the pass: rows read and dropped by the source and the filters. */
  readonly report: RunReport;
}

/** What stage 0's dedupe steps are configured to do, as the key files record it. */
export function dedupeSettings(dedupe: RunConfig['dedupe']): DedupeSettings {
  const { enabled, shingle, numPerm, bands, threshold } = dedupe.near;
  return {
    ids: dedupe.ids,
    exact: dedupe.exact,
    near: enabled ? { shingle, numPerm, bands, threshold, seed: DEFAULT_NEAR_DEDUPE.seed } : null,
  };
}

/** The settings that decide which rows reach stage 0's dedupe steps; shards keyed under others do not mix. */
export function filterSettings(config: DedupeKeysConfig): string {
  const { textColumn, idColumn, binaryAsString, maxDocumentMB, badRecords } = config.source;
  return JSON.stringify({
    source: { textColumn, idColumn: idColumn ?? null, binaryAsString, maxDocumentMB, badRecords },
    filter: config.filter,
    quality: config.sample.quality,
  });
}

/** One row's keys on its way to the key file. */
interface KeyRecord {
  readonly shard: string;
  readonly row: number;
  readonly id: string;
  readonly idHash: Uint32Array;
  readonly exactKey: Uint32Array;
  readonly bandKeys: Uint32Array | undefined;
  readonly sketch: Uint8Array | undefined;
}

/**
 * The keys pass of one rank: reads its shards exactly as a run does (ParquetSource, then the length and quality
 * filters: the same operators, so the same rows survive with the same row numbers and ids) and writes, per
 * shard, the keys each dedupe step decides by (see key-file.ts). Signatures are computed in the MinHash worker
 * pool, as near_dedupe computes them. Shards without a surviving row still get (empty) key files, so the
 * global step can tell "nothing passed" from "not done".
 */
export async function writeDedupeKeys(options: WriteDedupeKeysOptions): Promise<KeysPassResult> {
  const { config, root } = options;
  if (config.source.limit !== undefined) {
    throw new GlobalDedupeError(
      'AIR_DEDUPE_UNSUPPORTED',
      'source.limit counts rows across all shards in one process; a run split into ranks cannot honour it',
    );
  }
  const plan = [...options.shards].sort((a, b) => a.index - b.index);
  for (let i = 1; i < plan.length; i++) {
    if (plan[i]!.index === plan[i - 1]!.index) throw new RangeError(`shard index ${plan[i]!.index} twice`);
  }
  const settings = dedupeSettings(config.dedupe);
  mkdirSync(keysDir(root), { recursive: true });
  for (const { index } of plan) removeKeyFiles(root, index);

  const db = options.db ?? (await openDuckDB({ threads: config.engine.duckdbThreads }));
  const ownPool =
    settings.near !== null && options.pool === undefined
      ? createMinHashPool(config.engine.workerThreads)
      : undefined;
  const pool = options.pool ?? ownPool;
  try {
    const source = parquetSource(
      db,
      config,
      plan.map((p) => p.shard),
      [],
    );
    const sink = new KeysSink(root, plan, settings, filterSettings(config));
    const report = await pipeline(source)
      .through(filterStages(config))
      .pipe(keysOperator(settings, pool))
      .into(sink, { queueCapacity: config.engine.queueCapacity, signal: options.signal, log: options.log })
      .run();
    if (report.status !== 'completed') {
      throw new GlobalDedupeError(
        'AIR_DEDUPE_KEYS_INVALID',
        `the keys pass did not complete (${report.status}): ${report.error ?? 'interrupted'}`,
      );
    }
    const failed = Object.values(report.totals.failed).reduce((a, b) => a + b, 0);
    if (failed > 0) {
      // A row with no keys would be kept by the global step, unlike a single run where it fails: stop here.
      throw new GlobalDedupeError('AIR_DEDUPE_KEYS_INVALID', `the keys pass failed ${failed} rows`);
    }
    return { shards: sink.metas, report };
  } finally {
    await ownPool?.close();
    if (options.db === undefined) db.closeSync();
  }
}

/** Computes each document's keys; signatures in the pool, batches in flight concurrently, outputs in order. */
function keysOperator(
  settings: DedupeSettings,
  pool: SignaturePool | undefined,
): BatchOperator<Document, KeyRecord> {
  const near = settings.near;
  return {
    name: 'dedupe_keys',
    batchSize: 256,
    concurrency: 4,
    ordered: true,
    async processBatch(inputs, ctx): Promise<Array<Outcome<KeyRecord>>> {
      const signatures =
        near === null
          ? undefined
          : await signTexts(
              pool!,
              inputs.map((d) => d.text),
              near,
              ctx.signal,
            );
      return inputs.map((doc, i) => {
        const idHash = new Uint32Array(2);
        hash64Into(doc.id, idHash);
        const exactKey = new Uint32Array(2);
        if (settings.exact) exactKeyInto(doc.text, exactKey);
        let bandKeys: Uint32Array | undefined;
        let sketch: Uint8Array | undefined;
        if (near !== null) {
          const signature = signatureAt(signatures!, near.numPerm, i);
          bandKeys = new Uint32Array(near.bands);
          bandKeysInto(signature, near.bands, near.numPerm / near.bands, bandKeys);
          sketch = new Uint8Array(near.numPerm);
          for (let k = 0; k < near.numPerm; k++) sketch[k] = sketchValue(signature[k]!);
        }
        return emit({
          shard: doc.sourceFile,
          row: doc.sourceRow,
          id: doc.id,
          idHash,
          exactKey,
          bandKeys,
          sketch,
        });
      });
    },
  };
}

/** Tickets committed at a time (the files are durable only once finished; a failed pass is rerun whole). */
const COMMIT_EVERY = 1024;

/** Routes records to their shard's key file; shards come in plan order, each once. */
class KeysSink implements Sink<KeyRecord> {
  readonly name = 'write_keys';
  readonly metas: KeyFileMeta[] = [];
  private readonly position = new Map<string, number>();
  /** Plan position of the shard being written, and its writer. */
  private current = -1;
  private writer: KeyFileWriter | undefined;
  private pending: Ticket[] = [];
  private onCommit: (tickets: readonly Ticket[]) => void = () => {};

  constructor(
    private readonly root: string,
    private readonly plan: readonly PlannedShard[],
    private readonly settings: DedupeSettings,
    private readonly filters: string,
  ) {
    plan.forEach((p, i) => this.position.set(p.shard.label, i));
  }

  async open(onCommit: (tickets: readonly Ticket[]) => void): Promise<void> {
    this.onCommit = onCommit;
  }

  async write(record: KeyRecord, ticket: Ticket): Promise<void> {
    const at = this.position.get(record.shard);
    if (at === undefined) throw new Error(`a record of shard ${record.shard}, which is not in the plan`);
    if (at !== this.current) {
      if (at < this.current) throw new Error(`shard ${record.shard} met again after a later shard`);
      this.advanceTo(at);
    }
    this.writer!.append(
      record.row,
      record.id,
      record.idHash,
      record.exactKey,
      record.bandKeys,
      record.sketch,
    );
    this.pending.push(ticket);
    if (this.pending.length >= COMMIT_EVERY) this.commit();
  }

  async close(): Promise<void> {
    this.advanceTo(this.plan.length);
    this.commit();
  }

  async abort(): Promise<void> {
    this.writer?.abort();
    this.writer = undefined;
  }

  /** Finishes the shard being written and every shard before `at` that had no record; opens `at`. */
  private advanceTo(at: number): void {
    for (let p = this.current; p < at; p++) {
      if (p < 0) continue;
      const writer =
        p === this.current && this.writer !== undefined
          ? this.writer
          : new KeyFileWriter(
              this.root,
              this.plan[p]!.index,
              this.plan[p]!.shard.label,
              this.settings,
              this.filters,
            );
      this.metas.push(writer.finish());
    }
    this.writer = undefined;
    if (at < this.plan.length) {
      const { index, shard } = this.plan[at]!;
      this.writer = new KeyFileWriter(this.root, index, shard.label, this.settings, this.filters);
    }
    this.current = at;
  }

  private commit(): void {
    if (this.pending.length === 0) return;
    const tickets = this.pending;
    this.pending = [];
    this.onCommit(tickets);
  }
}
