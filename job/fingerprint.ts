import { createHash } from 'node:crypto';
import { resultSettings } from '../schemas/settings.js';
import type { RunConfig } from './config.js';

/** 16 hex digits of SHA-256 over the sorted result settings. */
export function configFingerprint(config: RunConfig): string {
  const settings = resultSettings(config);
  return createHash('sha256').update(JSON.stringify(settings)).digest('hex').slice(0, 16);
}

/** The keys whose values differ between two runs' result settings (for refusing a mismatched resume). */
export function differingSettings(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).sort();
}
