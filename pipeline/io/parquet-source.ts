import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JSDuckDBValueConverter, type DuckDBConnection, type DuckDBInstance } from '@duckdb/node-api';
import type { Document, MetaColumnType, MetaValue } from '../../schemas/documents.js';
import { t } from '../../schemas/types.js';
import { errorMessage, ParquetInputError } from '../errors.js';
import { countRows, coversAll, RangeCursor, type RowRanges } from '../row-ranges.js';
import { GarbageBudget } from '../memory.js';
import type { Ledger, Ticket } from '../ledger.js';
import type { Envelope, Source } from '../source.js';
import { sqlIdent, sqlString } from './duckdb.js';
import {
  classifyReadError,
  inspectParquet,
  isInvalidUtf8Error,
  type ParquetFooter,
} from './parquet-inspect.js';
import { mapConcurrent } from '../concurrent.js';
import { FOOTERS_IN_FLIGHT } from './parquet-footer.js';
import { StagedShard } from './object-store/staged-shard.js';
import { objectStore } from './object-store/store.js';
import { isObjectUrl, parseObjectUrl } from './object-store/url.js';
import { decodeUtf8, invalidUtf8Preview, rawStringColumn, type RawValue } from './raw-string-column.js';
import type { Shard } from './shards.js';

export interface ParquetSourceOptions {
  readonly shards: readonly Shard[];
  /** Column holding the document text (string). */
  readonly textColumn: string;
  /**
   * Column holding a document id. `undefined`: use `id` when the shard has it; otherwise, and for null ids,
   * the id is `<shard label>#<row>`. A named column that a shard lacks is an error.
   */
  readonly idColumn?: string;
  /** Scalar columns passed through to the output; `a.b` reads field b of struct column a (output name b). */
  readonly metaColumns: readonly string[];
  /** Read BINARY columns without a string annotation as text. */
  readonly binaryAsString?: boolean;
  /** Read at most this many rows in all, shards in order (for trial runs and benchmarks). */
  readonly limit?: number;
  /** What to do with a null, blank or oversized text: drop it with a reason (default), or stop the run. */
  readonly badRecords?: 'skip' | 'stop';
  /** Documents longer than this (UTF-8 bytes) are dropped as `too_large` without being loaded into JS. */
  readonly maxDocumentBytes?: number;
  /**
   * The most a shard's text column may inflate to, per row group, where it must be read as bytes (after
   * invalid UTF-8; see rawStringColumn). The job passes DuckDB's memory limit. Default 1 GiB.
   */
  readonly maxRowGroupTextBytes?: number;
}

/** Consecutive row groups fetched and read together: small row groups would each cost a GET and a query. */
const STAGE_SPAN_BYTES = 32 * 1024 * 1024;

export interface StageSpan {
  /** Row groups [first, last). */
  readonly first: number;
  readonly last: number;
  /** False for a row group settled entirely and not replayed (a span of one, never fetched). */
  readonly needed: boolean;
}

/** Cuts a shard's row groups into spans to fetch: consecutive needed ones up to STAGE_SPAN_BYTES together. */
export function stageSpans(
  count: number,
  needed: (g: number) => boolean,
  bytes: (g: number) => number,
): StageSpan[] {
  const spans: StageSpan[] = [];
  for (let g = 0; g < count;) {
    if (!needed(g)) {
      spans.push({ first: g, last: g + 1, needed: false });
      g++;
      continue;
    }
    let last = g + 1;
    let total = bytes(g);
    while (last < count && needed(last) && total + bytes(last) <= STAGE_SPAN_BYTES) total += bytes(last++);
    spans.push({ first: g, last, needed: true });
    g = last;
  }
  return spans;
}

/** A failure of the byte reader (hyparquet), told apart from DuckDB's so the message can name both. */
class RawColumnError extends Error {
  constructor(override readonly cause: unknown) {
    super(errorMessage(cause));
    this.name = 'RawColumnError';
  }
}

/** Where a shard's read stands: rows seen so far (the next row expected) and the rows settled before. */
interface ReadPosition {
  rowsSeen: number;
  readonly settled: RangeCursor | undefined;
}

/** What a row's text column holds, as far as the source can tell. */
type RowText =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'null' }
  | { readonly kind: 'too_large'; readonly bytes: number }
  | { readonly kind: 'invalid_utf8'; readonly preview: string };

/** The text DuckDB gave: a string, or null with the length that kept an oversized one out of JS, or null. */
function duckdbText(text: unknown, bytes: unknown): RowText {
  if (typeof text === 'string') return { kind: 'text', text };
  if (bytes === null || bytes === undefined) return { kind: 'null' };
  return { kind: 'too_large', bytes: Number(bytes) };
}

function cursorOf(ranges: RowRanges | undefined): RangeCursor | undefined {
  return ranges === undefined ? undefined : new RangeCursor(ranges);
}

interface PlannedShard {
  readonly shard: Shard;
  readonly footer: ParquetFooter;
  /** The rows read: the shard's slice, or all of it. */
  readonly start: number;
  readonly end: number;
  /** An object in storage: read through local stand-ins one row group at a time. */
  readonly staged: StagedShard | undefined;
  readonly idExpr: string | undefined;
  /** SQL expression per meta column, or undefined where this shard lacks it (values are null). */
  readonly metaExprs: ReadonlyArray<string | undefined>;
}

/**
 * Streams documents from Parquet shards through DuckDB, one chunk (2,048 rows) at a time, so neither a
 * whole file nor a whole row group is held in memory. Every footer is checked before the first row is read:
 * a bad shard fails the run at once, before any work is spent on the others.
 */
export class ParquetSource implements Source<Document> {
  readonly name = 'read';
  private plan: PlannedShard[] | undefined;
  private metaTypes: Record<string, MetaColumnType> = {};
  private conn: DuckDBConnection | undefined;
  /** DuckDB chunks hold native memory that V8 does not see; collecting every 16 MB read bounds it. */
  private readonly garbage = new GarbageBudget(16 * 1024 * 1024);
  /** Rows still to read under `limit`. */
  private remaining = Infinity;
  private settled: ReadonlyMap<string, RowRanges> | undefined;
  private replay = false;
  /** Where stand-ins of objects in storage are staged (made on the first one, removed on close). */
  private stageDir: string | undefined;

  constructor(
    private readonly db: DuckDBInstance,
    private readonly options: ParquetSourceOptions,
  ) {}

  /**
   * Continue an interrupted run: the rows it settled, by shard label, are not counted again. With `replay`
   * they are still read and sent as replay records (for stages that keep state); without it, skipped. Set
   * before reading; the footers can be checked (prepare) before the output folder is opened.
   */
  continueFrom(settled: ReadonlyMap<string, RowRanges>, replay: boolean): void {
    this.settled = settled;
    this.replay = replay;
  }

  /** Checks every shard's footer and columns; idempotent. */
  async prepare(): Promise<void> {
    if (this.plan !== undefined) return;
    if (this.conn === undefined) {
      this.conn = await this.db.connect();
      // DuckDB's default streaming buffer (~1 MB of results, but holding their pages alive) let it read far
      // ahead of us: 0.5-0.9 GB RSS on 128 MB row groups. A minimal buffer keeps reading in step with the
      // pipeline at no loss of throughput (bench/RESULTS.md).
      await this.conn.run(`SET streaming_buffer_size = '1KB'`);
    }
    const shards = this.options.shards;
    // Objects' heads and footers are fetched several at a time: one by one, round trips would add up.
    const staged = await mapConcurrent(shards, FOOTERS_IN_FLIGHT, async (shard, i) =>
      isObjectUrl(shard.path) ? this.stageObject(shard, i) : undefined,
    );
    const plan: PlannedShard[] = [];
    for (const [i, shard] of shards.entries()) {
      const object = staged[i];
      const footer = object === undefined ? await this.inspect(shard.path) : await this.inspectStaged(object);
      plan.push(this.planShard(shard, footer, object));
    }
    this.plan = plan;
  }

  private inspect(file: string): Promise<ParquetFooter> {
    return inspectParquet(this.conn!, file, this.options.binaryAsString ?? false);
  }

  /** The object's head and footer, fetched once; the ETag seen here pins every later read to that version. */
  private async stageObject(shard: Shard, index: number): Promise<StagedShard> {
    this.stageDir ??= mkdtempSync(path.join(os.tmpdir(), 'air-stage-'));
    const object = await objectStore().head(parseObjectUrl(shard.path));
    return StagedShard.open(objectStore(), object, this.stageDir, `shard-${index}`);
  }

  /** Inspects an object's footer through a stand-in, naming the object (not the stand-in) in any error. */
  private async inspectStaged(staged: StagedShard): Promise<ParquetFooter> {
    const file = await staged.footerFile();
    try {
      return await this.inspect(file);
    } catch (error) {
      throw renamed(error, file, staged.url);
    } finally {
      await staged.remove(file);
    }
  }

  /**
   * Output types of the pass-through columns, consistent across all shards, in the order given. A column
   * no shard has is left out (its values would all be null).
   */
  async metaColumnTypes(): Promise<Record<string, MetaColumnType>> {
    await this.prepare();
    const ordered: Record<string, MetaColumnType> = {};
    for (const name of metaOutputNames(this.options.metaColumns)) {
      const type = this.metaTypes[name];
      if (type !== undefined) ordered[name] = type;
    }
    return ordered;
  }

  async expectedRows(): Promise<number> {
    await this.prepare();
    const rows = this.plan!.reduce((sum, p) => sum + p.end - p.start, 0);
    let done = 0;
    for (const ranges of this.settled?.values() ?? []) done += countRows(ranges);
    return Math.min(rows, this.options.limit ?? Infinity) - done;
  }

  async *read(ledger: Ledger, signal: AbortSignal): AsyncIterable<Envelope<Document>> {
    await this.prepare();
    this.remaining = this.options.limit ?? Infinity;
    for (const planned of this.plan!) {
      if (signal.aborted || this.remaining <= 0) return;
      ledger.shard(planned.shard.label);
      yield* this.readShard(planned, ledger, signal);
    }
  }

  /** A record the source cannot use: dropped with a reason, or (badRecords: 'stop') the end of the run. */
  private reject(
    ticket: Ticket,
    ledger: Ledger,
    file: string,
    row: number,
    reason: string,
    what: string,
  ): void {
    if (this.options.badRecords === 'stop') {
      // Settled first, so the ledger still balances when the run stops here.
      ledger.dropped(ticket, this.name, reason);
      throw new ParquetInputError(
        'AIR_ROW_INVALID',
        file,
        `row ${row}: column "${this.options.textColumn}" ${what} (source.badRecords is "stop")`,
      );
    }
    ledger.dropped(ticket, this.name, reason);
  }

  close(): void {
    this.conn?.closeSync();
    this.conn = undefined;
    if (this.stageDir !== undefined) rmSync(this.stageDir, { recursive: true, force: true });
    this.stageDir = undefined;
  }

  private async *readShard(
    planned: PlannedShard,
    ledger: Ledger,
    signal: AbortSignal,
  ): AsyncIterable<Envelope<Document>> {
    const { shard, footer, staged } = planned;
    const position: ReadPosition = {
      rowsSeen: planned.start,
      settled: cursorOf(this.settled?.get(shard.label)),
    };
    if (staged === undefined) {
      // A whole shard is read without an upper bound (the same query as ever); a slice stops at its end.
      const end = planned.end === footer.rows ? undefined : planned.end;
      if (!(yield* this.readSpan(planned, shard.path, ledger, signal, position, end))) return;
    } else if (!(yield* this.readStaged(planned, staged, ledger, signal, position))) {
      return;
    }
    // readSpan reads until the footer's count; this is the last guard against a read that ends short.
    if (position.rowsSeen !== planned.end) throw incomplete(shard.path, planned, position.rowsSeen);
  }

  /**
   * An object in storage, a span of row groups at a time: each span (consecutive row groups up to
   * STAGE_SPAN_BYTES, at least one) is fetched with one ranged GET into a sparse stand-in while the span before
   * is read, so at most two spans are on disk. Row groups settled entirely and not replayed are never fetched.
   * Returns false when stopped early.
   */
  private async *readStaged(
    planned: PlannedShard,
    staged: StagedShard,
    ledger: Ledger,
    signal: AbortSignal,
    position: ReadPosition,
  ): AsyncGenerator<Envelope<Document>, boolean> {
    const groups = planned.footer.rowGroups;
    const settled = this.settled?.get(planned.shard.label) ?? [];
    const starts = groups.map((_, g) => groups.slice(0, g).reduce((a, b) => a + b, 0));
    const inSlice = (g: number): boolean =>
      starts[g]! >= planned.start && starts[g]! + groups[g]! <= planned.end;
    const needed = (g: number): boolean =>
      inSlice(g) && (this.replay || !coversAll(settled, starts[g]!, starts[g]! + groups[g]!));
    const spans = stageSpans(groups.length, needed, (g) => {
      const range = staged.rowGroups[g];
      return range === undefined ? Infinity : range[1] - range[0];
    });
    const fetchFrom = (k: number): Promise<string> | undefined => {
      const next = spans.slice(k).find((span) => span.needed);
      return next === undefined ? undefined : staged.rowGroupFile(next.first, next.last);
    };
    let pending = fetchFrom(0);
    try {
      for (const [k, span] of spans.entries()) {
        const end = starts[span.last - 1]! + groups[span.last - 1]!;
        if (!inSlice(span.first)) continue; // another unit's row groups
        if (!span.needed) {
          // Settled and not replayed: its rows would all be skipped (they still count towards a limit).
          this.remaining -= end - starts[span.first]!;
          position.rowsSeen = end;
          if (this.remaining <= 0) return false;
          continue;
        }
        const file = await pending!;
        pending = fetchFrom(k + 1);
        try {
          if (!(yield* this.readSpan(planned, file, ledger, signal, position, end))) return false;
        } catch (error) {
          throw renamed(error, file, shard(planned));
        } finally {
          await staged.remove(file);
        }
      }
      return true;
    } finally {
      // A fetch started for a span that will not be read: let it finish, then drop its stand-in.
      void pending?.then((file) => staged.remove(file)).catch(() => {});
    }
  }

  /**
   * Reads `file` (the shard, or a stand-in of it) from `position.rowsSeen` up to row `end` (undefined: to the
   * end), in one DuckDB query while it goes well. Two things make DuckDB stop inside a row group:
   * - Invalid UTF-8: its reader cannot read past it. The text column of that row group is read as bytes, then
   *   DuckDB goes on from the next row group (it skips whole row groups by file_row_number).
   * - A stream that ends early without an error. With two or more threads, the UTF-8 error of one row group
   *   is sometimes lost and the stream just ends (1 query in 10 here, bench/RESULTS.md §13); out of memory on
   *   a huge page does the same. The row group where it stopped is read again alone: one row group is
   *   scanned by one thread, which reports the error every time, so a second silent stop there is real.
   * Returns false when stopped early (the row limit, or the run's signal).
   */
  private async *readSpan(
    planned: PlannedShard,
    file: string,
    ledger: Ledger,
    signal: AbortSignal,
    position: ReadPosition,
    end: number | undefined,
  ): AsyncGenerator<Envelope<Document>, boolean> {
    const { shard, footer } = planned;
    const last = end ?? footer.rows;
    let mode: 'stream' | 'one_group' | 'bytes' = 'stream';
    let invalidUtf8: unknown;
    while (position.rowsSeen < last) {
      const until = mode === 'stream' ? end : rowGroupEnd(footer, position.rowsSeen);
      try {
        const complete = yield* this.readRows(
          planned,
          file,
          ledger,
          signal,
          position,
          until,
          mode === 'bytes',
        );
        if (!complete) return false;
        if (position.rowsSeen >= (until ?? footer.rows)) {
          mode = 'stream';
          invalidUtf8 = undefined;
        } else if (mode === 'stream') {
          mode = 'one_group';
        } else {
          throw incomplete(shard.path, planned, position.rowsSeen);
        }
      } catch (error) {
        if (error instanceof RawColumnError) {
          // The byte reader failed where DuckDB had found invalid UTF-8: say both, not just "corrupt".
          const found = classifyReadError(shard.path, invalidUtf8).message.slice(shard.path.length + 2);
          throw new ParquetInputError(
            'AIR_PARQUET_CORRUPT',
            shard.path,
            `${found}; reading the text column as bytes instead failed too (${errorMessage(error.cause)})`,
            { cause: error.cause },
          );
        }
        if (error instanceof ParquetInputError) throw error;
        if (mode === 'bytes' || !isInvalidUtf8Error(error)) {
          throw classifyReadError(shard.path, error, rowGroupOf(footer, position.rowsSeen));
        }
        invalidUtf8 = error;
        mode = 'bytes';
      }
    }
    return true;
  }

  /**
   * Reads `file` from `position.rowsSeen` up to row `until`, advancing the position row by row. With
   * `textAsBytes`, DuckDB reads every column but the text, which comes as stored bytes from `rawStringColumn`
   * and is checked for UTF-8 here. Returns false when stopped early (the row limit, or the run's signal).
   */
  private async *readRows(
    planned: PlannedShard,
    file: string,
    ledger: Ledger,
    signal: AbortSignal,
    position: ReadPosition,
    until: number | undefined,
    textAsBytes: boolean,
  ): AsyncGenerator<Envelope<Document>, boolean> {
    const { shard } = planned;
    const textColumn = sqlIdent(this.options.textColumn);
    const maxBytes = this.options.maxDocumentBytes;
    const select = [
      // An oversized document is never turned into a JS string: only its length crosses over.
      textAsBytes
        ? 'NULL::VARCHAR AS __text'
        : maxBytes === undefined
          ? `${textColumn} AS __text`
          : `CASE WHEN strlen(${textColumn}) <= ${maxBytes} THEN ${textColumn} END AS __text`,
      planned.idExpr === undefined ? 'NULL::VARCHAR AS __id' : `${planned.idExpr}::VARCHAR AS __id`,
      'file_row_number AS __row',
      ...planned.metaExprs.map((expr, i) => `${expr ?? 'NULL'} AS ${sqlIdent(`__meta_${i}`)}`),
      textAsBytes ? 'NULL::BIGINT AS __bytes' : `strlen(${textColumn}) AS __bytes`,
    ];
    const from = position.rowsSeen;
    const sql =
      `SELECT ${select.join(', ')} FROM read_parquet(${sqlString(file)}, file_row_number=true, ` +
      `binary_as_string=${this.options.binaryAsString ?? false})` +
      (from > 0 ? ` WHERE file_row_number >= ${from}` : '') +
      (until === undefined ? '' : `${from > 0 ? ' AND' : ' WHERE'} file_row_number < ${until}`);
    const metaNames = metaOutputNames(this.options.metaColumns);
    const raw = textAsBytes
      ? rawStringColumn(file, this.options.textColumn, from, this.options.maxRowGroupTextBytes ?? 2 ** 30)
      : undefined;
    try {
      const result = await this.conn!.stream(sql);
      for (;;) {
        if (signal.aborted) return false;
        const chunk = await result.fetchChunk();
        if (chunk === null || chunk.rowCount === 0) return true;
        const columns = chunk.convertColumns(JSDuckDBValueConverter);
        this.garbage.track(chunkBytes(columns[0]!));
        const [texts, ids, rows] = columns as [unknown[], unknown[], unknown[]];
        const sizes = columns[columns.length - 1]!;
        for (let i = 0; i < chunk.rowCount; i++) {
          if (this.remaining <= 0) return false; // the limit: a deliberate partial read, not checked against the footer
          this.remaining--;
          const row = Number(rows[i]);
          if (row !== position.rowsSeen) throw gap(shard.path, position.rowsSeen, row);
          position.rowsSeen++;
          const text =
            raw !== undefined ? await this.judgeBytes(raw, row, shard.path) : duckdbText(texts[i], sizes[i]);
          const meta: Record<string, MetaValue> = {};
          for (let m = 0; m < metaNames.length; m++) {
            const name = metaNames[m]!;
            if (name in this.metaTypes) meta[name] = toMetaValue(columns[3 + m]![i]);
          }
          const envelope = this.envelope(shard, ledger, position.settled, row, text, ids[i], meta);
          if (envelope !== undefined) yield envelope;
        }
      }
    } finally {
      await raw?.return(undefined);
    }
  }

  /** The text of `row` from the raw column: checked for size, then for UTF-8. */
  private async judgeBytes(raw: AsyncGenerator<RawValue>, row: number, file: string): Promise<RowText> {
    let next: IteratorResult<RawValue>;
    try {
      next = await raw.next();
    } catch (error) {
      if (error instanceof ParquetInputError) throw error;
      throw new RawColumnError(error);
    }
    if (next.done === true || next.value.row !== row) {
      throw new ParquetInputError(
        'AIR_PARQUET_INCOMPLETE',
        file,
        `the text column has no value for row ${row}`,
      );
    }
    const { bytes } = next.value;
    if (bytes === null) return { kind: 'null' };
    const max = this.options.maxDocumentBytes;
    if (max !== undefined && bytes.length > max) return { kind: 'too_large', bytes: bytes.length };
    const text = decodeUtf8(bytes);
    return text === undefined
      ? { kind: 'invalid_utf8', preview: invalidUtf8Preview(bytes) }
      : { kind: 'text', text };
  }

  /** One row as a record, or undefined when it is settled and not replayed, or rejected with a reason. */
  private envelope(
    shard: Shard,
    ledger: Ledger,
    settled: RangeCursor | undefined,
    row: number,
    text: RowText,
    id: unknown,
    meta: Record<string, MetaValue>,
  ): Envelope<Document> | undefined {
    const done = settled?.has(row) ?? false;
    if (done && !this.replay) return undefined;
    const ticket = done ? ledger.replay(shard.label, row) : ledger.read(shard.label, row);
    if (done && (text.kind !== 'text' || text.text.trim().length === 0)) return undefined;
    switch (text.kind) {
      case 'too_large':
        this.reject(ticket, ledger, shard.path, row, 'too_large', `is ${text.bytes} bytes, over the limit`);
        return undefined;
      case 'null':
        this.reject(ticket, ledger, shard.path, row, 'null_text', 'is null');
        return undefined;
      case 'invalid_utf8':
        this.reject(
          ticket,
          ledger,
          shard.path,
          row,
          'invalid_utf8',
          `is not valid UTF-8 (${text.preview}...)`,
        );
        return undefined;
      case 'text':
        break;
    }
    if (text.text.trim().length === 0) {
      this.reject(ticket, ledger, shard.path, row, 'empty_text', 'is blank');
      return undefined;
    }
    return {
      ticket,
      value: {
        id: typeof id === 'string' && id.length > 0 ? id : `${shard.label}#${row}`,
        text: text.text,
        sourceFile: shard.label,
        sourceRow: row,
        meta,
      },
    };
  }

  private planShard(shard: Shard, footer: ParquetFooter, staged: StagedShard | undefined): PlannedShard {
    const types = new Map(footer.columns.map((c) => [c.name, c.type]));
    const { textColumn, idColumn } = this.options;
    const textType = types.get(textColumn);
    if (textType === undefined) {
      throw new ParquetInputError(
        'AIR_PARQUET_MISSING_COLUMN',
        shard.path,
        `no text column "${textColumn}" (columns: ${[...types.keys()].join(', ')}); set source.textColumn`,
      );
    }
    if (textType !== 'VARCHAR') {
      const hint =
        textType === 'BLOB'
          ? '; if it holds UTF-8 text without a string annotation, set source.binaryAsString'
          : '';
      throw new ParquetInputError(
        'AIR_PARQUET_COLUMN_TYPE',
        shard.path,
        `text column "${textColumn}" has type ${textType}, expected a string column${hint}`,
      );
    }
    let idExpr: string | undefined;
    if (idColumn !== undefined) {
      if (!types.has(idColumn)) {
        throw new ParquetInputError(
          'AIR_PARQUET_MISSING_COLUMN',
          shard.path,
          `no id column "${idColumn}" (columns: ${[...types.keys()].join(', ')})`,
        );
      }
      idExpr = sqlIdent(idColumn);
    } else if (types.has('id')) {
      idExpr = sqlIdent('id');
    }
    // Specs with the same output name are alternatives (e.g. `url` and `metadata.url` across FineWeb and
    // Dolma shards): the first one this shard has wins.
    const metaExprs = metaOutputNames(this.options.metaColumns).map((outName) => {
      for (const spec of this.options.metaColumns) {
        if (outputName(spec) !== outName) continue;
        const expr = this.planMeta(shard, types, spec);
        if (expr !== undefined) return expr;
      }
      return undefined;
    });
    const { start, end } = sliceOf(shard, footer);
    return { shard, footer, staged, idExpr, metaExprs, start, end };
  }

  /** Resolves one pass-through column for a shard and checks its type agrees with the other shards. */
  private planMeta(shard: Shard, types: Map<string, string>, spec: string): string | undefined {
    const [top, ...path] = spec.split('.');
    const outName = outputName(spec);
    const topType = types.get(top!);
    if (topType === undefined) return undefined;
    const type = path.length === 0 ? topType : structFieldType(topType, path);
    if (type === undefined) return undefined;
    const mapped = metaTypeOf(type);
    if (mapped === undefined) {
      throw new ParquetInputError(
        'AIR_PARQUET_COLUMN_TYPE',
        shard.path,
        `pass-through column "${spec}" has type ${type}; only scalar columns (text, numbers, booleans, timestamps) pass through`,
      );
    }
    const known = this.metaTypes[outName];
    if (known !== undefined && known.kind !== mapped.kind) {
      throw new ParquetInputError(
        'AIR_PARQUET_COLUMN_TYPE',
        shard.path,
        `pass-through column "${spec}" is ${mapped.kind} here but ${known.kind} in an earlier shard`,
      );
    }
    this.metaTypes[outName] = mapped;
    return [top!, ...path].map(sqlIdent).join('.');
  }
}

/** The rows to read: the shard's slice, checked to be whole row groups of this file (else it has changed). */
function sliceOf(shard: Shard, footer: ParquetFooter): { start: number; end: number } {
  if (shard.rows === undefined) return { start: 0, end: footer.rows };
  const { start, end } = shard.rows;
  const bounds = new Set([0]);
  let at = 0;
  for (const rows of footer.rowGroups) bounds.add((at += rows));
  if (!(start < end && bounds.has(start) && bounds.has(end))) {
    throw new ParquetInputError(
      'AIR_PARQUET_INCOMPLETE',
      shard.path,
      `rows ${start}-${end} are not whole row groups of this file (${footer.rows} rows in ` +
        `${footer.rowGroups.length} row groups): it changed since the slice was made`,
    );
  }
  return { start, end };
}

function shard(planned: PlannedShard): string {
  return planned.shard.path;
}

/** An error about a local stand-in, retold about the object it stands for (its URL, never the temp path). */
function renamed(error: unknown, file: string, url: string): unknown {
  if (!(error instanceof ParquetInputError)) return error;
  const message = error.message.replaceAll(file, url);
  const detail = message.startsWith(`${url}: `) ? message.slice(url.length + 2) : message;
  return new ParquetInputError(error.code, url, detail, { cause: error.cause });
}

/** `metadata.url` is written as column `url`. */
function outputName(spec: string): string {
  const dot = spec.lastIndexOf('.');
  return dot < 0 ? spec : spec.slice(dot + 1);
}

function metaOutputNames(specs: readonly string[]): string[] {
  return [...new Set(specs.map(outputName))];
}

function incomplete(file: string, planned: PlannedShard, rowsSeen: number): ParquetInputError {
  const read = rowsSeen - planned.start;
  const expected = planned.end - planned.start;
  const of =
    planned.start === 0 && planned.end === planned.footer.rows
      ? ''
      : ` (rows ${planned.start}-${planned.end})`;
  return new ParquetInputError(
    'AIR_PARQUET_INCOMPLETE',
    file,
    `the reader stopped after ${read} of ${expected} rows${of} without an error, which DuckDB does when it runs ` +
      `out of memory on large pages: raise engine.duckdbMemoryMB (--duckdb-memory-mb) or lower engine.duckdbThreads`,
  );
}

function gap(file: string, expected: number, got: number): ParquetInputError {
  return new ParquetInputError(
    'AIR_PARQUET_INCOMPLETE',
    file,
    `rows out of order: expected row ${expected}, got ${got}`,
  );
}

function chunkBytes(texts: readonly unknown[]): number {
  let bytes = 0;
  for (const text of texts) if (typeof text === 'string') bytes += text.length;
  return bytes;
}

/** The first row after the row group that holds `row`. */
function rowGroupEnd(footer: ParquetFooter, row: number): number {
  let end = 0;
  for (const rows of footer.rowGroups) {
    end += rows;
    if (row < end) return end;
  }
  return end;
}

function rowGroupOf(footer: ParquetFooter, row: number): number | undefined {
  let end = 0;
  for (let g = 0; g < footer.rowGroups.length; g++) {
    end += footer.rowGroups[g]!;
    if (row < end) return g;
  }
  return undefined;
}

/** The type of a (possibly nested) struct field, from DuckDB's STRUCT(a T, "b" U, ...) notation. */
function structFieldType(type: string, path: readonly string[]): string | undefined {
  let current = type;
  for (const field of path) {
    const fields = parseStruct(current);
    const next = fields?.get(field);
    if (next === undefined) return undefined;
    current = next;
  }
  return current;
}

function parseStruct(type: string): Map<string, string> | undefined {
  if (!type.startsWith('STRUCT(') || !type.endsWith(')')) return undefined;
  const body = type.slice('STRUCT('.length, -1);
  const fields = new Map<string, string>();
  let depth = 0;
  let start = 0;
  const parts: string[] = [];
  for (let i = 0; i < body.length; i++) {
    const ch = body[i];
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    else if (ch === ',' && depth === 0) {
      parts.push(body.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(body.slice(start));
  for (const part of parts) {
    const m = /^\s*("(?:[^"]|"")*"|\S+)\s+(.*)$/.exec(part);
    if (m === null) continue;
    const name = m[1]!.startsWith('"') ? m[1]!.slice(1, -1).replaceAll('""', '"') : m[1]!;
    fields.set(name, m[2]!.trim());
  }
  return fields;
}

function metaTypeOf(duckType: string): MetaColumnType | undefined {
  const nullable = t.nullable;
  if (duckType === 'VARCHAR') return nullable(t.string());
  if (/^(TINYINT|SMALLINT|INTEGER|BIGINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|HUGEINT)$/.test(duckType)) {
    return nullable(t.int64());
  }
  if (/^(FLOAT|DOUBLE|DECIMAL.*)$/.test(duckType)) return nullable(t.float64());
  if (duckType === 'BOOLEAN') return nullable(t.bool());
  if (/^(DATE|TIMESTAMP.*)$/.test(duckType)) return nullable(t.timestamp());
  return undefined;
}

function toMetaValue(value: unknown): MetaValue {
  if (value === undefined || value === null) return null;
  if (
    typeof value === 'string' ||
    typeof value === 'number' ||
    typeof value === 'bigint' ||
    typeof value === 'boolean' ||
    value instanceof Date
  ) {
    return value;
  }
  // Scalars only reach here (checked at plan time); anything else is a bug worth a loud message.
  throw new Error(`unexpected pass-through value of type ${typeof value}`);
}
