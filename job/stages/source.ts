import type { DuckDBInstance } from '@duckdb/node-api';
import { ParquetSource } from '../../pipeline/io/parquet-source.js';
import type { Shard } from '../../pipeline/io/shards.js';
import type { RunConfig } from '../config.js';

/**
 * The Parquet source of a run's config: the one place its settings become reader options, so a run and the
 * global dedupe keys pass read the same rows with the same row numbers and ids. `metaColumns` overrides the
 * pass-through columns (the keys pass needs none).
 */
export function parquetSource(
  db: DuckDBInstance,
  config: Pick<RunConfig, 'source' | 'engine'>,
  shards: readonly Shard[],
  metaColumns: readonly string[] = config.source.metaColumns,
): ParquetSource {
  return new ParquetSource(db, {
    shards,
    textColumn: config.source.textColumn,
    idColumn: config.source.idColumn,
    metaColumns,
    binaryAsString: config.source.binaryAsString,
    limit: config.source.limit,
    maxDocumentBytes: Math.floor(config.source.maxDocumentMB * 1024 * 1024),
    maxRowGroupTextBytes: config.engine.duckdbMemoryMB * 1024 * 1024,
    badRecords: config.source.badRecords,
  });
}
