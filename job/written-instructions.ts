import path from 'node:path';
import type { DuckDBInstance } from '@duckdb/node-api';
import type { KnownRecord } from '../operators/dedupe/near-dedupe.js';
import { sqlString } from '../pipeline/io/duckdb.js';

/**
 * The instructions of rows already written to `parts` (files in `dir`), a DuckDB chunk at a time, with the ids
 * instruction dedupe gives them (`document@depth`). Resume feeds them to instruction dedupe, which sits after
 * the LLM stages and so cannot see earlier rows replayed.
 */
export async function* writtenInstructions(
  db: DuckDBInstance,
  dir: string,
  parts: readonly string[],
): AsyncGenerator<KnownRecord[]> {
  if (parts.length === 0) return;
  const list = `[${parts.map((p) => sqlString(path.join(dir, p))).join(', ')}]`;
  const conn = await db.connect();
  try {
    const result = await conn.stream(
      `SELECT document_id::VARCHAR, depth::INTEGER, instruction::VARCHAR FROM read_parquet(${list})`,
    );
    for (;;) {
      const chunk = await result.fetchChunk();
      if (chunk === null || chunk.rowCount === 0) break;
      yield chunk.getRows().map(([id, depth, instruction]) => ({
        id: `${String(id)}@${String(depth)}`,
        text: String(instruction ?? ''),
      }));
    }
  } finally {
    conn.closeSync();
  }
}
