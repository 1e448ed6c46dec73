import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { JSDuckDBValueConverter } from '@duckdb/node-api';
import type { ConstraintCounter } from '../operators/constraint-counter.js';
import { CONSTRAINT_TYPES } from '../operators/constraint-tagger.js';
import {
  distribution,
  measureInstruction,
  MetricsAccumulator,
  type DatasetMetrics,
  type Distribution,
} from '../operators/instruction-metrics.js';
import { duckdbMessage, openDuckDB, sqlIdent, sqlString } from '../pipeline/io/duckdb.js';
import { ConfigError, ParquetInputError } from '../pipeline/errors.js';
import { formatCount, formatTable } from '../report/format.js';
import { integerArg, positiveIntArg } from './args.js';
import { COUNTER_DEFAULTS, openLlmCounter, type CounterFlags } from './counter-llm.js';

interface ScoreFlags extends CounterFlags {
  instructionColumn: string;
  outputColumn: string;
  json?: string;
}

/** The summary `air score` prints and writes; `constraintsByLlm` only when an LLM counter is configured. */
export interface ScoreSummary extends DatasetMetrics {
  readonly constraintsByLlm?: Distribution & { readonly counter: string };
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
      'Measure an instruction dataset without an LLM (optionally also with an LLM constraint counter): lengths and constraints per instruction.',
    )
    .argument('<file>', 'a .parquet file or a .jsonl/.json file of records')
    .option('--instruction-column <name>', 'column holding the instruction', 'instruction')
    .option('--output-column <name>', 'column holding the response (missing: output words are 0)', 'output')
    .option('--json <file>', 'also write the summary as JSON here')
    .option('--counter-url <url>', 'also count constraints with an LLM at this OpenAI-compatible /v1 URL')
    .option('--counter-model <name>', "the LLM counter's model name")
    .option('--api-key-env <var>', "environment variable holding the LLM counter's API key")
    .option(
      '--concurrency <n>',
      'LLM counter calls in flight at most',
      positiveIntArg,
      COUNTER_DEFAULTS.concurrency,
    )
    .option('--seed <n>', 'seed of the LLM counter calls', integerArg, COUNTER_DEFAULTS.seed)
    .option('--cache <file>', "SQLite file caching the LLM counter's replies (default: in memory)")
    .option(
      '--llm <mode>',
      '"sim": count with the built-in simulator (seeded noise; shows the plumbing only)',
    )
    .action(async (file: string, flags: ScoreFlags) => {
      const opened = await openLlmCounter(flags);
      try {
        const summary = await scoreFile(file, flags.instructionColumn, flags.outputColumn, opened?.counter);
        for (const line of summaryLines(file, summary)) io.stdout(`${line}\n`);
        if (flags.json !== undefined) await writeFile(flags.json, `${JSON.stringify(summary, null, 2)}\n`);
      } finally {
        await opened?.close();
      }
    });
}

export async function scoreFile(
  file: string,
  instructionColumn: string,
  outputColumn: string,
  /** An optional second counter (the LLM one), run chunk by chunk beside the model-free measures. */
  counter?: ConstraintCounter,
): Promise<ScoreSummary> {
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
    const counted: number[] = [];
    for (;;) {
      const chunk = await result.fetchChunk();
      if (chunk === null || chunk.rowCount === 0) break;
      const [instructions, outputs] = chunk.convertColumns(JSDuckDBValueConverter) as [unknown[], unknown[]];
      const batch: string[] = [];
      for (let i = 0; i < chunk.rowCount; i++) {
        const instruction = instructions[i];
        if (typeof instruction !== 'string') continue;
        batch.push(instruction);
        metrics.add(
          measureInstruction(instruction, typeof outputs[i] === 'string' ? (outputs[i] as string) : null),
        );
      }
      if (counter !== undefined) counted.push(...(await counter.count(batch)));
    }
    const summary = metrics.summary();
    if (counter === undefined) return summary;
    return { ...summary, constraintsByLlm: { counter: counter.label, ...distribution(counted) } };
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

function summaryLines(file: string, s: ScoreSummary): string[] {
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
      ...(s.constraintsByLlm === undefined
        ? []
        : [[`constraints per instruction (${s.constraintsByLlm.counter})`, ...d(s.constraintsByLlm)]]),
    ]),
  );
  lines.push('share of instructions stating each constraint type:');
  lines.push(
    ...formatTable(CONSTRAINT_TYPES.map((t) => [`  ${t.label}`, `${(100 * s.typeShare[t.id]).toFixed(1)}%`])),
  );
  return lines;
}
