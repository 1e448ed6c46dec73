import { readFile } from 'node:fs/promises';
import { ConfigError } from '../../pipeline/errors.js';
import { parseRunStats, type RunStats } from '../../schemas/stats.js';

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
