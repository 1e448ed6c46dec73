import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AccountingSnapshot } from '../llm/accounting.js';
import type { StageSteps } from '../operators/air/steps.js';
import { writeAtomically } from '../pipeline/io/files.js';
import { readManifest } from '../pipeline/io/manifest.js';
import { peakRssMB } from '../pipeline/memory.js';
import type { RunReport } from '../pipeline/run.js';
import { LEDGER_FILE } from '../report/stats/ledger-file.js';
import type { RunConfig } from './config.js';
import { configFingerprint } from './fingerprint.js';

export interface JobResult {
  report: RunReport;
  /** Every committed part of the output folder. */
  parts: readonly PartEntry[];
  /** Where the run's ledger and stage counters were written. */
  ledgerFile: string;
  /** Model calls, tokens, latency and cost per role and model (method `air`, or embeddings in any method). */
  llm?: LlmUsage;
}

export interface LlmUsage {
  accounting: AccountingSnapshot;
  cache: { hits: number; misses: number };
  promptVersion: string;
  /** Which stage calls which prompt steps, in stage order (method `air`). */
  callLayout?: readonly StageSteps[];
}

export interface PartEntry {
  readonly file: string;
  readonly rows: number;
}

/** Writes `ledger.json` (atomically) with the report, the parts, the process's resources and the config. */
export async function writeLedger(
  config: RunConfig,
  report: RunReport,
  parts: readonly PartEntry[],
  llm: LlmUsage | undefined,
  failureRows: number,
): Promise<string> {
  await mkdir(config.output, { recursive: true });
  const file = path.join(config.output, LEDGER_FILE);
  const usage = process.resourceUsage();
  const body = {
    air: 'ledger',
    version: 1,
    finishedAt: new Date().toISOString(),
    ...report,
    // Whole-process figures: what a user sizes machines by.
    resources: {
      peakRssMB: peakRssMB(),
      userCpuMs: Math.round(usage.userCPUTime / 1000),
      systemCpuMs: Math.round(usage.systemCPUTime / 1000),
    },
    parts,
    failureRows,
    llm,
    configFingerprint: configFingerprint(config),
    config,
  };
  await writeAtomically(file, `${JSON.stringify(body, null, 2)}\n`);
  return file;
}

/** Every part the folder's manifest records, this run's and those of the runs it continued. */
export async function committedParts(dir: string): Promise<PartEntry[]> {
  const manifest = await readManifest(dir);
  return (manifest?.commits ?? [])
    .filter((c) => c.part !== null)
    .map((c) => ({ file: c.part!, rows: c.rows }));
}

/** The result of a run that had already completed, from its ledger. */
export async function previousResult(config: RunConfig): Promise<JobResult> {
  const ledgerFile = path.join(config.output, LEDGER_FILE);
  const ledger = JSON.parse(await readFile(ledgerFile, 'utf8')) as RunReport & {
    parts: PartEntry[];
    llm?: LlmUsage;
  };
  const report: RunReport = {
    status: ledger.status,
    wallMs: 0,
    stages: ledger.stages,
    shards: ledger.shards,
    totals: ledger.totals,
    failureSamples: ledger.failureSamples,
    dropNotes: ledger.dropNotes,
  };
  return { report, parts: ledger.parts, ledgerFile, llm: ledger.llm };
}
