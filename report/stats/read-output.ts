import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { pathExists } from '../../pipeline/io/files.js';
import {
  DuckDBTypeId,
  JSDuckDBValueConverter,
  type DuckDBConnection,
  type DuckDBType,
} from '@duckdb/node-api';
import { LEDGER_FILE } from './ledger-file.js';
import { duckdbMessage, openDuckDB, sqlIdent, sqlString } from '../../pipeline/io/duckdb.js';
import { ConfigError, ParquetInputError } from '../../pipeline/errors.js';
import { GarbageBudget } from '../../pipeline/memory.js';
import type { RunStats, StatsKind } from '../../schemas/stats.js';
import { t, type ColumnType } from '../../schemas/types.js';
import { StatsCollector } from './collector.js';
import { readLedgerFile, type LedgerFile } from './ledger-file.js';

/** One column of the data read: its name and its type, as the dataset card describes it. */
export interface OutputColumn {
  readonly name: string;
  readonly type: ColumnType;
}

export interface OutputStats {
  readonly stats: RunStats;
  /** Every column of the data files, in file order. */
  readonly columns: readonly OutputColumn[];
  /** The data files read (paths as found). */
  readonly files: readonly string[];
  /** The run's ledger.json, when the folder has one. */
  readonly ledger: LedgerFile | undefined;
}

/**
 * Columns the collector reads when the row has them. `instruction`, `output` and `text` are long: they are
 * read only where the count they give is not in a column of its own (see `columnsToRead`).
 */
const STATS_COLUMNS = [
  'document_words',
  'initial_instruction',
  'instruction_words',
  'output_words',
  'constraints',
  'tagged_types',
  'depth',
  'depth_reached',
  'initial_score',
  'complexity',
  'quality',
  'stop_reason',
  'calls',
  'url',
  'language',
  'config_fingerprint',
  'prompt_version',
  'guidance_model',
  'student_model',
] as const;

/**
 * Recomputes a run's stats from its output alone: the Parquet part files (or any instruction dataset as
 * Parquet or JSON lines), plus ledger.json when the folder has one (the funnel, the LLM accounting, the wall
 * time). Rows stream through the same StatsCollector the job feeds, one DuckDB chunk at a time, so the numbers
 * are the ones the run computed; only the timeline is missing, because rows carry no write time.
 */
export async function statsFromOutput(target: string): Promise<OutputStats> {
  const { files, dir } = await dataFiles(target);
  const ledgerPath = dir === undefined ? undefined : path.join(dir, LEDGER_FILE);
  const ledger =
    ledgerPath !== undefined && (await pathExists(ledgerPath)) ? await readLedgerFile(ledgerPath) : undefined;
  let columns: OutputColumn[] = [];
  let collector: StatsCollector;
  if (files.length === 0) {
    if (ledger === undefined) throw new ConfigError(`${target}: no part-*.parquet and no ${LEDGER_FILE}`);
    // A run that wrote no rows: the ledger still says where every input went.
    collector = new StatsCollector({ kind: kindOfLedger(ledger), timeline: false });
  } else {
    const read = await readRows(files);
    columns = read.columns;
    collector = read.collector;
  }
  if (ledger !== undefined) applyLedger(collector, ledger);
  const stats = { ...collector.snapshot(), origin: 'parquet' as const };
  return { stats, columns, files, ledger };
}

/**
 * The row figures of `files` alone, without a ledger: `air merge` takes them from the deduped dataset when it
 * dropped rows, and the funnel, LLM accounting and time from the ranks.
 */
export async function rowStatsOf(files: readonly string[]): Promise<RunStats> {
  return (await readRows(files)).collector.snapshot();
}

async function readRows(
  files: readonly string[],
): Promise<{ columns: OutputColumn[]; collector: StatsCollector }> {
  const parquet = files.every((f) => /\.parquet$/i.test(f));
  const list = `[${files.map(sqlString).join(', ')}]`;
  const source = parquet ? `read_parquet(${list})` : `read_json(${list}, format = 'auto')`;
  const db = await openDuckDB({ threads: 2 });
  const conn = await db.connect();
  try {
    // Little read-ahead: a chunk of long texts at a time is all the collector needs.
    await conn.run(`SET streaming_buffer_size = '1KB'`);
    const columns = await describe(conn, source, files);
    const names = new Set(columns.map((c) => c.name));
    const kind = kindOfColumns(names, files[0]!);
    const collector = new StatsCollector({ kind, timeline: false });
    const selected = columnsToRead(names);
    const expected = parquet
      ? Number(
          (
            await conn.runAndReadAll(`SELECT sum(num_rows) FROM parquet_file_metadata(${list})`)
          ).getRowsJS()[0]![0],
        )
      : undefined;
    const seen = await streamRows(conn, source, selected, collector);
    // DuckDB's stream can end early without an error when it runs out of memory: count against the footers.
    if (expected !== undefined && seen !== expected) {
      throw new ParquetInputError(
        'AIR_PARQUET_INCOMPLETE',
        files.length === 1 ? files[0]! : path.dirname(files[0]!),
        `read ${seen} rows of ${expected}`,
      );
    }
    return { columns, collector };
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

async function streamRows(
  conn: DuckDBConnection,
  source: string,
  selected: readonly string[],
  collector: StatsCollector,
): Promise<number> {
  const select = selected.length === 0 ? '1 AS __none' : selected.map(sqlIdent).join(', ');
  const result = await conn.stream(`SELECT ${select} FROM ${source}`);
  const garbage = new GarbageBudget(16 * 1024 * 1024);
  let seen = 0;
  for (;;) {
    const chunk = await result.fetchChunk();
    if (chunk === null || chunk.rowCount === 0) break;
    const values = chunk.convertColumns(JSDuckDBValueConverter) as unknown[][];
    let bytes = 0;
    for (let i = 0; i < chunk.rowCount; i++) {
      const row: Record<string, unknown> = {};
      for (let c = 0; c < selected.length; c++) {
        const value = values[c]![i];
        if (typeof value === 'string') bytes += value.length;
        row[selected[c]!] = value;
      }
      collector.row(row);
    }
    seen += chunk.rowCount;
    garbage.track(bytes);
  }
  return seen;
}

/** The stats columns present, and the long text columns only where no count column stands in for them. */
export function columnsToRead(names: ReadonlySet<string>): string[] {
  const selected: string[] = STATS_COLUMNS.filter((c) => names.has(c));
  const need = (column: string, unless: readonly string[]): void => {
    if (names.has(column) && !unless.every((u) => names.has(u))) selected.push(column);
  };
  need('instruction', ['instruction_words', 'tagged_types']);
  need('output', ['output_words']);
  need('text', ['document_words']);
  return selected;
}

function kindOfColumns(names: ReadonlySet<string>, file: string): StatsKind {
  if (names.has('instruction'))
    return names.has('constraints') && names.has('depth') ? 'air' : 'instructions';
  if (names.has('text')) return 'documents';
  throw new ConfigError(
    `${file}: neither an "instruction" nor a "text" column: not air output or an instruction dataset`,
  );
}

function kindOfLedger(ledger: LedgerFile): StatsKind {
  const method = (ledger.config as { method?: unknown } | undefined)?.method;
  return method === 'documents' ? 'documents' : 'air';
}

function applyLedger(collector: StatsCollector, ledger: LedgerFile): void {
  collector.runReport(ledger);
  if (ledger.llm !== undefined) collector.llmUsage(ledger.llm);
  if (ledger.configFingerprint !== undefined) collector.noteConfig(ledger.configFingerprint);
  const finishedAt = ledger.finishedAt === undefined ? NaN : Date.parse(ledger.finishedAt);
  if (Number.isFinite(finishedAt)) collector.span(finishedAt - ledger.wallMs, finishedAt);
}

/** The columns of Parquet data files, as `air stats` reads them (without reading their rows). */
export async function parquetColumns(files: readonly string[]): Promise<OutputColumn[]> {
  const db = await openDuckDB({ threads: 1 });
  const conn = await db.connect();
  try {
    return await describe(conn, `read_parquet([${files.map(sqlString).join(', ')}])`, files);
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

async function describe(
  conn: DuckDBConnection,
  source: string,
  files: readonly string[],
): Promise<OutputColumn[]> {
  try {
    const reader = await conn.runAndReadAll(`SELECT * FROM ${source} LIMIT 0`);
    const types = reader.columnTypes();
    return reader.columnNames().map((name, i) => ({ name, type: columnTypeOf(types[i]!) }));
  } catch (error) {
    throw new ParquetInputError('AIR_PARQUET_NOT_PARQUET', files[0]!, `cannot read: ${duckdbMessage(error)}`);
  }
}

/** DuckDB's type of a column as the schema builders describe it (all nullable: DuckDB does not say). */
export function columnTypeOf(type: DuckDBType): ColumnType {
  const nullable = (c: ColumnType): ColumnType => ({ ...c, nullable: true }) as ColumnType;
  switch (type.typeId) {
    case DuckDBTypeId.BOOLEAN:
      return nullable(t.bool());
    case DuckDBTypeId.TINYINT:
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.INTEGER:
    case DuckDBTypeId.UTINYINT:
    case DuckDBTypeId.USMALLINT:
      return nullable(t.int32());
    case DuckDBTypeId.UINTEGER:
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UBIGINT:
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
      return nullable(t.int64());
    case DuckDBTypeId.FLOAT:
    case DuckDBTypeId.DOUBLE:
    case DuckDBTypeId.DECIMAL:
      return nullable(t.float64());
    case DuckDBTypeId.TIMESTAMP:
    case DuckDBTypeId.TIMESTAMP_S:
    case DuckDBTypeId.TIMESTAMP_MS:
    case DuckDBTypeId.TIMESTAMP_NS:
    case DuckDBTypeId.TIMESTAMP_TZ:
    case DuckDBTypeId.DATE:
      return nullable(t.timestamp());
    case DuckDBTypeId.LIST:
    case DuckDBTypeId.ARRAY:
      return nullable(t.list(columnTypeOf(type.valueType)));
    case DuckDBTypeId.STRUCT:
      return nullable(
        t.struct(
          Object.fromEntries(type.entryNames.map((name, i) => [name, columnTypeOf(type.entryTypes[i]!)])),
        ),
      );
    default:
      // Strings, and anything without a closer equivalent (read as its text form).
      return nullable(t.string());
  }
}

/** A run's folder (its part files), a folder of Parquet or JSON-lines files, or one such file. */
async function dataFiles(target: string): Promise<{ files: string[]; dir: string | undefined }> {
  let info;
  try {
    info = await stat(target);
  } catch {
    throw new ConfigError(`${target}: no such file or folder`);
  }
  if (!info.isDirectory()) {
    if (!/\.(parquet|jsonl|json)$/i.test(target)) {
      throw new ConfigError(`${target}: air stats reads a run's folder, or a .parquet, .jsonl or .json file`);
    }
    return { files: [target], dir: undefined };
  }
  const names = (await readdir(target)).sort();
  const pick = (pattern: RegExp): string[] =>
    names.filter((n) => pattern.test(n)).map((n) => path.join(target, n));
  // A run's folder (it has a ledger) holds its rows in part files only; any other folder, in any Parquet or
  // JSON-lines file.
  const patterns = names.includes(LEDGER_FILE)
    ? [/^part-.*\.parquet$/]
    : [/^part-.*\.parquet$/, /^[^.].*\.parquet$/, /^[^.].*\.jsonl$/];
  for (const pattern of patterns) {
    const files = pick(pattern);
    if (files.length > 0) return { files, dir: target };
  }
  return { files: [], dir: target };
}
