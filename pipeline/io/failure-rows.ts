import { mkdir, open, rename } from 'node:fs/promises';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import type { RecordFailure } from '../run.js';

/** The folder of failure rows inside a run's output folder. */
export const FAILED_DIR = 'failed';

/** Longest raw reply kept per failure row (a runaway reply must not bloat the file). */
const MAX_RAW_CHARS = 64 * 1024;

/**
 * Failed records as rows: which input row, which stage, the error's kind and message and, for LLM
 * failures, the model's raw reply. Rows buffer in memory (failures are few, and a failure-rate ceiling
 * stops a run where they are not) and are written as one part per checkpoint, so a failure row is durable
 * before the manifest entry that settles its input.
 */
export class FailureRows {
  private rows: RecordFailure[] = [];
  private written = 0;

  constructor(
    private readonly dir: string,
    /** Number of the next part, after those an interrupted run wrote. */
    private nextPart = 0,
  ) {}

  add(failure: RecordFailure): void {
    this.rows.push(failure);
  }

  get pending(): number {
    return this.rows.length;
  }

  /** Writes the buffered rows as failed/part-NNNNN.parquet (tmp, fsync, rename); null when there are none. */
  async flush(): Promise<string | null> {
    if (this.rows.length === 0) return null;
    const rows = this.rows;
    this.rows = [];
    const folder = path.join(this.dir, FAILED_DIR);
    await mkdir(folder, { recursive: true });
    const name = `part-${String(this.nextPart++).padStart(5, '0')}.parquet`;
    const buffer = parquetWriteBuffer({
      columnData: [
        { name: 'source_file', data: rows.map((r) => r.shard), type: 'STRING' },
        { name: 'source_row', data: rows.map((r) => BigInt(r.row)), type: 'INT64' },
        { name: 'stage', data: rows.map((r) => r.stage), type: 'STRING' },
        { name: 'error_kind', data: rows.map((r) => r.kind), type: 'STRING' },
        { name: 'message', data: rows.map((r) => r.message), type: 'STRING' },
        { name: 'raw_reply', data: rows.map((r) => rawReply(r.error)), type: 'STRING', nullable: true },
      ],
    });
    const final = path.join(folder, name);
    const temporary = path.join(folder, `.${name}.tmp`);
    const handle = await open(temporary, 'w');
    try {
      await handle.write(new Uint8Array(buffer));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, final);
    this.written += rows.length;
    return `${FAILED_DIR}/${name}`;
  }

  get rowsWritten(): number {
    return this.written;
  }
}

/** The raw reply an LLM error carries (never the request, so never an API key). */
function rawReply(error: unknown): string | null {
  const raw = typeof error === 'object' && error !== null ? (error as { raw?: unknown }).raw : undefined;
  return typeof raw === 'string' ? raw.slice(0, MAX_RAW_CHARS) : null;
}
