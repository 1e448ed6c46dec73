import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeAtomically } from '../pipeline/io/files.js';
import type { RunStats } from '../schemas/stats.js';
import type { TableSchema } from '../schemas/types.js';
import { columnsOfTable, type CardColumn } from './card/columns.js';
import { CARD_MARKER, datasetCard } from './card/dataset-card.js';
import { reportHtml } from './html/report-page.js';

export const STATS_FILE = 'stats.json';
export const REPORT_FILE = 'report.html';
export const CARD_FILE = 'README.md';
/** Where the card goes when the folder already has a README.md that air did not write. */
export const CARD_FALLBACK_FILE = 'README.air.md';

export interface RunArtifactsInput {
  readonly stats: RunStats;
  /** The output table as the run wrote it (job), or the columns read back from the files (`air stats`). */
  readonly schema: TableSchema | readonly CardColumn[];
  /** The resolved run config, for the dataset card's settings. */
  readonly config?: unknown;
  /** The data files for the card (default: the folder's part-*.parquet). */
  readonly dataFiles?: readonly string[];
  /** The run's name in the report (default: the folder's name). */
  readonly label?: string;
  /** Fixed for reproducible pages (tests); default now. */
  readonly generatedAt?: Date;
}

export interface RunArtifacts {
  readonly statsFile: string;
  readonly reportFile: string;
  readonly cardFile: string;
}

/**
 * Writes stats.json, report.html and the README.md dataset card into a run's output folder, each under a
 * temporary name and then renamed, so a reader never sees half a file (a crash leaves the previous version).
 * A README.md that air did not write is left alone: the card then goes to README.air.md.
 */
export async function writeRunArtifacts(outputDir: string, input: RunArtifactsInput): Promise<RunArtifacts> {
  await mkdir(outputDir, { recursive: true });
  const label = input.label ?? path.basename(path.resolve(outputDir));
  const columns = isTable(input.schema) ? columnsOfTable(input.schema) : input.schema;
  const statsFile = path.join(outputDir, STATS_FILE);
  const reportFile = path.join(outputDir, REPORT_FILE);
  const cardFile = path.join(
    outputDir,
    (await isForeignCard(path.join(outputDir, CARD_FILE))) ? CARD_FALLBACK_FILE : CARD_FILE,
  );
  await writeAtomically(statsFile, `${JSON.stringify(input.stats, null, 2)}\n`);
  await writeAtomically(
    reportFile,
    reportHtml([{ label, stats: input.stats }], { generatedAt: input.generatedAt }),
  );
  await writeAtomically(
    cardFile,
    datasetCard({ stats: input.stats, columns, config: input.config, dataFiles: input.dataFiles }),
  );
  return { statsFile, reportFile, cardFile };
}

async function isForeignCard(file: string): Promise<boolean> {
  try {
    return !(await readFile(file, 'utf8')).includes(CARD_MARKER);
  } catch {
    return false;
  }
}

function isTable(schema: TableSchema | readonly CardColumn[]): schema is TableSchema {
  return !Array.isArray(schema);
}
