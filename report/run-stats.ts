import path from 'node:path';
import type { RunStats } from '../schemas/stats.js';
import type { TableSchema } from '../schemas/types.js';
import { STATS_FILE, writeRunArtifacts, type RunArtifacts } from './artifacts.js';
import { describeColumns } from './card/columns.js';
import { mergeTime, type LlmUsageInput, type RunOutcome, type StatsCollector } from './stats/collector.js';
import { statsFromOutput, type OutputStats } from './stats/read-output.js';
import { readStatsFile } from './stats/stats-file.js';

export interface RunStatsInput {
  /** The collector the run fed (one `row()` per row written). */
  readonly stats: StatsCollector;
  readonly report: RunOutcome;
  /** The LLM client's accounting at the end (method `air`). */
  readonly llm?: LlmUsageInput;
  /** The table the run wrote. */
  readonly schema: TableSchema;
  /** The resolved run config. */
  readonly config: unknown;
  readonly configFingerprint?: string;
  /**
   * A resumed run: this process saw only its own rows, so the numbers are recomputed from the folder's part
   * files and ledger, and its timeline is added to the one the earlier processes wrote.
   */
  readonly resumed?: boolean;
}

/**
 * The job's entry point at the end of a run: stats.json, report.html and the README.md dataset card in the
 * output folder, from what the collector saw while the run streamed.
 */
export async function writeRunStats(outputDir: string, input: RunStatsInput): Promise<RunArtifacts> {
  const { stats } = input;
  stats.runReport(input.report);
  if (input.llm !== undefined) stats.llmUsage(input.llm);
  if (input.configFingerprint !== undefined) stats.noteConfig(input.configFingerprint);
  stats.finish();
  if (input.resumed === true) {
    return (await recomputeRunArtifacts(outputDir, { time: stats.snapshot().time })).artifacts;
  }
  return writeRunArtifacts(outputDir, {
    stats: stats.snapshot(),
    schema: input.schema,
    config: input.config,
  });
}

export interface Recomputed {
  readonly artifacts: RunArtifacts;
  readonly stats: RunStats;
  readonly read: OutputStats;
  /** Whether the timeline came from the folder's earlier stats.json (rows carry no write time). */
  readonly keptTimeline: boolean;
}

/**
 * `air stats <folder>`: the three files again, from the part files and ledger.json alone. Rows carry no write
 * time, so the timeline is the earlier stats.json's when it counted the same rows, plus `time` when given (a
 * resumed run's own).
 */
export async function recomputeRunArtifacts(
  dir: string,
  options: { readonly time?: RunStats['time'] } = {},
): Promise<Recomputed> {
  const read = await statsFromOutput(dir);
  const previous = await readStatsFile(path.join(dir, STATS_FILE));
  let time = read.stats.time;
  let keptTimeline = false;
  if (options.time !== undefined) {
    time = previous === undefined ? options.time : mergeTime(previous.time, options.time);
    keptTimeline = previous !== undefined;
  } else if (
    previous !== undefined &&
    previous.rows === read.stats.rows &&
    previous.time.buckets.length > 0
  ) {
    time = previous.time;
    keptTimeline = true;
  }
  const stats = { ...read.stats, time };
  const artifacts = await writeRunArtifacts(dir, {
    stats,
    schema: describeColumns(stats.kind, read.columns),
    config: read.ledger?.config,
  });
  return { artifacts, stats, read, keptTimeline };
}
