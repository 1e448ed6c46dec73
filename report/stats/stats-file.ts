import { readFile } from 'node:fs/promises';
import { ConfigError } from '../../pipeline/errors.js';
import { runStatsSchema, STATS_VERSION, type RunStats } from '../../schemas/stats.js';

/** A stats.json read back and validated against schemas/stats.ts; undefined when the file does not exist. */
export async function readStatsFile(file: string): Promise<RunStats | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${file}: not JSON (${(error as Error).message})`);
  }
  return parseRunStats(value, file);
}

/** Validates stats read back from a file; the error names the file and the first bad field. */
export function parseRunStats(value: unknown, source: string): RunStats {
  const result = runStatsSchema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const at = issue.path.length === 0 ? '' : ` at ${issue.path.join('.')}`;
  throw new ConfigError(`${source}: not air stats version ${STATS_VERSION}${at}: ${issue.message}`);
}
