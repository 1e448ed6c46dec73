import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { JSDuckDBValueConverter } from '@duckdb/node-api';
import { CONSTRAINT_TYPES } from '../operators/constraint-tagger.js';
import {
  measureInstruction,
  MetricsAccumulator,
  type DatasetMetrics,
} from '../operators/instruction-metrics.js';
import { duckdbMessage, openDuckDB, sqlIdent, sqlString } from '../pipeline/io/duckdb.js';
import { ConfigError, ParquetInputError } from '../pipeline/errors.js';
import { formatCount, formatTable } from '../report/format.js';

interface ScoreFlags {
  instructionColumn: string;
  outputColumn: string;
  json?: string;
}

/**
 * `air score <file>`: model-free complexity of any instruction dataset (Parquet or JSON lines, e.g. Alpaca
 * exports): words per instruction and output, the constraint types each instruction states (rule-based
 * tagger) and the number of constraints it states (constraint-count.ts). Streams the file through DuckDB, one chunk at a time.
 */
export function registerScoreCommand(program: Command, io: { stdout: (t: string) => void }): void {
  program
    .command('score')
    .description(
      'Measure an instruction dataset without an LLM: lengths and constraint types per instruction.',
    )
    .argument('<file>', 'a .parquet file or a .jsonl/.json file of records')
    .option('--instruction-column <name>', 'column holding the instruction', 'instruction')
    .option('--output-column <name>', 'column holding the response (missing: output words are 0)', 'output')
    .option('--json <file>', 'also write the summary as JSON here')
    .action(async (file: string, flags: ScoreFlags) => {
      const summary = await scoreFile(file, flags.instructionColumn, flags.outputColumn);
      for (const line of summaryLines(file, summary)) io.stdout(`${line}\n`);
      if (flags.json !== undefined) await writeFile(flags.json, `${JSON.stringify(summary, null, 2)}\n`);
    });
}

export async function scoreFile(
  file: string,
  instructionColumn: string,
  outputColumn: string,
): Promise<DatasetMetrics> {
  const reader = /\.parquet$/i.test(file)
    ? `read_parquet(${sqlString(file)})`
    : /\.jsonl?$/i.test(file)
      ? `read_json(${sqlString(file)}, format = 'auto')`
      : undefined;
  if (reader === undefined)
    throw new ConfigError(`${file}: air score reads .parquet, .jsonl and .json files`);
  const db = await openDuckDB({ threads: 2 });
  const conn = await db.connect();
  try {
    let columns: string[];
    try {
      columns = (await conn.runAndReadAll(`DESCRIBE SELECT * FROM ${reader}`))
        .getRowsJS()
        .map((r) => String(r[0]));
    } catch (error) {
      throw new ParquetInputError('AIR_PARQUET_NOT_PARQUET', file, `cannot read: ${duckdbMessage(error)}`);
    }
    if (!columns.includes(instructionColumn)) {
      throw new ConfigError(
        `${path.basename(file)}: no column "${instructionColumn}" (columns: ${columns.join(', ')}); use --instruction-column`,
      );
    }
    const output = columns.includes(outputColumn) ? `${sqlIdent(outputColumn)}::VARCHAR` : 'NULL::VARCHAR';
    const result = await conn.stream(
      `SELECT ${sqlIdent(instructionColumn)}::VARCHAR, ${output} FROM ${reader}`,
    );
    const metrics = new MetricsAccumulator();
    for (;;) {
      const chunk = await result.fetchChunk();
      if (chunk === null || chunk.rowCount === 0) break;
      const [instructions, outputs] = chunk.convertColumns(JSDuckDBValueConverter) as [unknown[], unknown[]];
      for (let i = 0; i < chunk.rowCount; i++) {
        const instruction = instructions[i];
        if (typeof instruction !== 'string') continue;
        metrics.add(
          measureInstruction(instruction, typeof outputs[i] === 'string' ? (outputs[i] as string) : null),
        );
      }
    }
    return metrics.summary();
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

function summaryLines(file: string, s: DatasetMetrics): string[] {
  const d = (x: { mean: number; p50: number; p90: number }) => [
    x.mean.toFixed(1),
    String(x.p50),
    String(x.p90),
  ];
  const lines = [`${path.basename(file)}: ${formatCount(s.rows)} instructions`];
  lines.push(
    ...formatTable([
      ['measure', 'mean', 'p50', 'p90'],
      ['instruction words', ...d(s.instructionWords)],
      ['output words', ...d(s.outputWords)],
      ['constraint types per instruction', ...d(s.constraintsPerInstruction)],
      ['constraints stated per instruction', ...d(s.constraintsStated)],
    ]),
  );
  lines.push('share of instructions stating each constraint type:');
  lines.push(
    ...formatTable(CONSTRAINT_TYPES.map((t) => [`  ${t.label}`, `${(100 * s.typeShare[t.id]).toFixed(1)}%`])),
  );
  return lines;
}
