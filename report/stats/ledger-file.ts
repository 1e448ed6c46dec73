import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { ConfigError } from '../../pipeline/errors.js';
import { accountingSnapshotSchema, stageStatsSchema } from '../../schemas/stats.js';

/** A run's ledger, beside its part files (written by job/run-job.ts). */
export const LEDGER_FILE = 'ledger.json';
/** One JSON line per record removed as a duplicate, naming the record it duplicates. */
export const DUPLICATES_FILE = 'duplicates.jsonl';

const count = z.number().int().nonnegative();
const counts = z.record(z.string(), count);

/**
 * The part of job/run-job.ts's ledger.json that stats are made from. Other keys are ignored (the ledger
 * carries more), so ledgers of older and newer versions load as long as these agree.
 */
const ledgerFileSchema = z.object({
  air: z.literal('ledger'),
  status: z.enum(['completed', 'interrupted', 'failed']),
  finishedAt: z.string().optional(),
  wallMs: z.number().nonnegative(),
  // Stage stats may grow fields; only the ones stats use are kept.
  stages: z.array(z.object(stageStatsSchema.shape)),
  totals: z.object({
    read: count,
    written: count,
    rowsWritten: count,
    dropped: counts,
    failed: counts,
    abandoned: count,
  }),
  llm: z
    .object({
      accounting: accountingSnapshotSchema,
      cache: z.object({ hits: count, misses: count }).optional(),
      promptVersion: z.string().optional(),
    })
    .optional(),
  configFingerprint: z.string().optional(),
  config: z.unknown().optional(),
});

export type LedgerFile = z.infer<typeof ledgerFileSchema>;

/** Reads and checks a ledger.json; the error names the file and the first field that does not fit. */
export async function readLedgerFile(file: string): Promise<LedgerFile> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new ConfigError(`${file}: not a readable JSON ledger (${(error as Error).message})`);
  }
  const result = ledgerFileSchema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  throw new ConfigError(`${file}: not an air ledger at ${issue.path.join('.') || '(top)'}: ${issue.message}`);
}
