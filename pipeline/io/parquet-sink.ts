import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Transferable } from 'node:worker_threads';
import type { ColumnType, TableSchema } from '../../schemas/types.js';
import { AirError, errorMessage } from '../errors.js';
import { collectGarbage } from '../memory.js';
import type { Ticket } from '../ledger.js';
import { packTexts, transferablesOf } from '../pool/packed-texts.js';
import type { Sink } from '../source.js';
import type { EncodedColumn, WriterCodec, WriterRequest } from './parquet-writer-protocol.js';
import { parquetSchemaOf } from './parquet-schema.js';
import { WorkerPool } from '../pool/worker-pool.js';
import { siblingModule } from '../pool/worker-file.js';

export type Compression = 'zstd' | 'snappy' | 'gzip' | 'brotli' | 'uncompressed';

export interface ParquetSinkOptions<T> {
  /** Output folder; created if missing. */
  readonly dir: string;
  readonly schema: TableSchema;
  /** Turns a record into a row keyed by the schema's column names. */
  readonly toRow: (value: T) => Readonly<Record<string, unknown>>;
  /** A part file is committed once it holds this many rows... */
  readonly partRows: number;
  /** ...or this many bytes of string data (a proxy for its uncompressed size), whichever comes first. */
  readonly partBytes: number;
  /** ...or once it has been open this long (bounds the work a crash can cost; default: no limit). */
  readonly partMs?: number;
  /** A row group is written once it holds this many rows or bytes of string data. */
  readonly rowGroupRows: number;
  readonly rowGroupBytes: number;
  readonly compression: Compression;
  /** File name prefix: `part` gives part-00000.parquet, part-00001.parquet, ... */
  readonly prefix?: string;
  /**
   * Continue an interrupted run: number parts from here and accept the folder's committed parts (the caller
   * has checked them against its manifest).
   */
  readonly firstPart?: number;
  /** Called after each part is committed and its rows settled in the ledger (to checkpoint the run). */
  readonly afterCommit?: (part: CommittedPart) => Promise<void>;
}

export interface CommittedPart {
  readonly file: string;
  readonly rows: number;
  readonly bytes: number;
}

const CODECS: Record<Compression, WriterCodec> = {
  zstd: 'ZSTD',
  snappy: 'SNAPPY',
  gzip: 'GZIP',
  brotli: 'BROTLI',
  uncompressed: 'UNCOMPRESSED',
};

/**
 * Writes records into rolling Parquet part files. Rows collect in column buffers on the main thread, one row
 * group at a time; a full row group is handed (strings as transferred bytes) to a writer thread that encodes
 * and compresses it while the next one fills, so memory is bounded by about two row groups and the event
 * loop never blocks on encoding. A part is written under a hidden temporary name, fsynced and renamed:
 * a file under a final name is always complete, and only then are its rows reported committed.
 */
export class ParquetSink<T> implements Sink<T> {
  readonly name = 'write';
  readonly parts: CommittedPart[] = [];
  private readonly columns: Array<[string, ColumnType]>;
  /** One writer thread: requests reach it in order, and it holds the open file between them. */
  private thread: WorkerPool | undefined;
  private onCommit: (tickets: readonly Ticket[]) => void = () => {};
  private partOpen = false;
  private partTickets: Ticket[] = [];
  /** Rows of each input row in the open part: a part closes only when it holds all of an input's rows. */
  private rowsPerTicket = new Map<Ticket, number>();
  private partBytes = 0;
  private partOpenedAt = 0;
  private groupValues: unknown[][] = [];
  private groupRows = 0;
  private groupBytes = 0;
  /** The row group being encoded by the writer thread while the next one fills. */
  private inflight: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: ParquetSinkOptions<T>) {
    this.columns = Object.entries(options.schema.fields);
    this.resetGroup();
  }

  async open(onCommit: (tickets: readonly Ticket[]) => void): Promise<void> {
    this.onCommit = onCommit;
    await mkdir(this.options.dir, { recursive: true });
    const prefix = this.options.prefix ?? 'part';
    const existing = (await readdir(this.options.dir)).filter(
      (f) => f.startsWith(`${prefix}-`) && f.endsWith('.parquet'),
    );
    if (existing.length > 0 && this.options.firstPart === undefined) {
      throw new AirError(
        'AIR_USAGE',
        `${this.options.dir}: already holds ${existing.length} part files; write to an empty folder`,
      );
    }
    this.thread = new WorkerPool({
      filename: siblingModule(import.meta.url, 'parquet-writer-worker'),
      threads: 1,
      maxQueue: 4,
    });
  }

  async write(value: T, ticket: Ticket): Promise<void> {
    const row = this.options.toRow(value);
    // Validate the whole row before buffering any of it, so a bad row leaves no partial trace.
    const values = this.columns.map(([name, type]) => checkValue(name, type, row[name]));
    if (!this.partOpen) await this.openPart();
    for (let i = 0; i < values.length; i++) {
      this.groupValues[i]!.push(values[i]);
      const bytes = stringBytes(values[i]);
      this.groupBytes += bytes;
      this.partBytes += bytes;
    }
    this.groupRows += 1;
    this.partTickets.push(ticket);
    this.rowsPerTicket.set(ticket, (this.rowsPerTicket.get(ticket) ?? 0) + 1);
    const full =
      this.partTickets.length >= this.options.partRows ||
      this.partBytes >= this.options.partBytes ||
      performance.now() - this.partOpenedAt >= (this.options.partMs ?? Infinity);
    if (full && this.holdsWholeInputs()) {
      await this.commitPart();
    } else if (this.groupRows >= this.options.rowGroupRows || this.groupBytes >= this.options.rowGroupBytes) {
      await this.flushGroup();
    }
  }

  async close(): Promise<void> {
    if (this.thread === undefined) return;
    try {
      if (this.partOpen) await this.commitPart();
    } finally {
      await this.thread.close();
      this.thread = undefined;
    }
  }

  async abort(): Promise<void> {
    if (this.thread === undefined) return;
    await this.inflight.catch(() => {});
    await this.call({ op: 'abort' }).catch(() => {});
    await this.thread.close();
    this.thread = undefined;
  }

  /**
   * True when every input row with a row in the open part has no other record still in flight, so that a
   * committed part settles each of its inputs completely (an input's depths never straddle two parts, and
   * a resumed run never writes one of them twice). Siblings arrive close together, so the overshoot is small.
   */
  private holdsWholeInputs(): boolean {
    for (const [ticket, rows] of this.rowsPerTicket) if (ticket.live !== rows) return false;
    return true;
  }

  private get partIndex(): number {
    return (this.options.firstPart ?? 0) + this.parts.length;
  }

  private partName(index: number): string {
    return `${this.options.prefix ?? 'part'}-${String(index).padStart(5, '0')}.parquet`;
  }

  private temporaryPath(): string {
    return path.join(this.options.dir, `.${this.partName(this.partIndex)}.tmp`);
  }

  private async openPart(): Promise<void> {
    await this.call({
      op: 'open',
      file: this.temporaryPath(),
      schema: parquetSchemaOf(this.options.schema),
      codec: CODECS[this.options.compression],
    });
    this.partOpen = true;
    this.partOpenedAt = performance.now();
  }

  /** Hands the filled row group to the writer thread; waits only for the previous one. */
  private async flushGroup(): Promise<void> {
    if (this.groupRows === 0) return;
    const transfer: Transferable[] = [];
    const columns = this.columns.map(([name, type], i) =>
      encodeColumn(name, type, this.groupValues[i]!, transfer),
    );
    const rows = this.groupRows;
    this.resetGroup();
    await this.inflight;
    this.inflight = this.call({ op: 'rowGroup', rows, columns }, transfer);
    // The row group's strings are garbage now that their bytes went to the writer thread.
    collectGarbage();
    // Surface a failure at the next await without an unhandled rejection in between.
    this.inflight.catch(() => {});
  }

  private async commitPart(): Promise<void> {
    await this.flushGroup();
    await this.inflight;
    const final = path.join(this.options.dir, this.partName(this.partIndex));
    const bytes = await this.call({ op: 'finish', final });
    this.partOpen = false;
    const part = { file: final, rows: this.partTickets.length, bytes };
    this.parts.push(part);
    const committed = this.partTickets;
    this.partTickets = [];
    this.rowsPerTicket = new Map();
    this.partBytes = 0;
    this.onCommit(committed);
    await this.options.afterCommit?.(part);
  }

  private async call(request: WriterRequest, transfer?: Transferable[]): Promise<number> {
    try {
      return await this.thread!.run<number>(request, { transferList: transfer });
    } catch (error) {
      const file = path.join(this.options.dir, this.partName(this.partIndex));
      throw new AirError('AIR_PARQUET_WRITE', `${file}: could not write part file: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }

  private resetGroup(): void {
    this.groupValues = this.columns.map(() => []);
    this.groupRows = 0;
    this.groupBytes = 0;
  }
}

/** Top-level strings go as one transferable byte buffer; other columns are structured-cloned. */
function encodeColumn(
  name: string,
  type: ColumnType,
  values: unknown[],
  transfer: Transferable[],
): EncodedColumn {
  if (type.kind !== 'string') return { name, kind: 'values', values };
  let nulls: Uint8Array | undefined;
  const texts = values.map((v, i) => {
    if (v !== null) return v as string;
    nulls ??= new Uint8Array(values.length);
    nulls[i] = 1;
    return '';
  });
  const packed = packTexts(texts);
  transfer.push(...transferablesOf(packed));
  if (nulls !== undefined) transfer.push(nulls.buffer as ArrayBuffer);
  return nulls === undefined
    ? { name, kind: 'texts', texts: packed }
    : { name, kind: 'texts', texts: packed, nulls };
}

/**
 * Rejects a value that does not fit its column, naming the column; returns it in the form the writer wants
 * (int64 as bigint, missing nullable values as null).
 */
function checkValue(column: string, type: ColumnType, value: unknown): unknown {
  if (value === null || value === undefined) {
    if (type.nullable) return null;
    throw new AirError('AIR_ROW_INVALID', `column "${column}" is null but not nullable`);
  }
  const bad = (expected: string): never => {
    throw new AirError('AIR_ROW_INVALID', `column "${column}": expected ${expected}, got ${typeof value}`);
  };
  switch (type.kind) {
    case 'string':
      return typeof value === 'string' ? value : bad('a string');
    case 'int32':
      return typeof value === 'number' && Number.isInteger(value) && Math.abs(value) <= 2 ** 31
        ? value
        : bad('a 32-bit integer');
    case 'int64':
      if (typeof value === 'bigint') return value;
      return typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : bad('an integer');
    case 'float64':
      return typeof value === 'number' ? value : bad('a number');
    case 'bool':
      return typeof value === 'boolean' ? value : bad('a boolean');
    case 'timestamp':
      return value instanceof Date && !Number.isNaN(value.getTime()) ? value : bad('a valid Date');
    case 'list':
      return Array.isArray(value)
        ? value.map((item, i) => checkValue(`${column}[${i}]`, type.of, item))
        : bad('an array');
    case 'struct': {
      if (typeof value !== 'object' || Array.isArray(value) || value instanceof Date) return bad('an object');
      const record = value as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const [name, field] of Object.entries(type.fields)) {
        out[name] = checkValue(`${column}.${name}`, field, record[name]);
      }
      return out;
    }
  }
}

function stringBytes(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (Array.isArray(value)) return value.reduce((sum: number, v) => sum + stringBytes(v), 0);
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    return Object.values(value).reduce((sum: number, v) => sum + stringBytes(v), 0);
  }
  return 8;
}
