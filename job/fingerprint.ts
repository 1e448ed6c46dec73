import { createHash } from 'node:crypto';
import type { RunConfig } from './config.js';

/**
 * The settings that decide what a run writes, flattened to `a.b.c` keys. Throughput, paths, limits and
 * display settings are left out: changing them must not make a resume refuse, and changing any key here must.
 */
export function resultSettings(config: RunConfig): Record<string, unknown> {
  const relevant = {
    method: config.method,
    input: config.input,
    source: config.source,
    filter: config.filter,
    dedupe: config.dedupe,
    air: { ...config.air, documentsInFlight: undefined },
    llm: {
      mode: config.llm.mode,
      guidance: endpointResult(config.llm.guidance),
      student: endpointResult(config.llm.student),
    },
  };
  const flat: Record<string, unknown> = {};
  flatten(relevant, '', flat);
  return flat;
}

/** Model and sampling decide replies; URLs, keys, concurrency and timeouts do not. */
function endpointResult(endpoint: RunConfig['llm']['guidance']): unknown {
  if (endpoint === undefined) return undefined;
  return {
    model: endpoint.model,
    sampling: endpoint.sampling,
    contextSize: endpoint.model.startsWith('local:') ? endpoint.local.contextSize : undefined,
  };
}

function flatten(value: unknown, prefix: string, into: Record<string, unknown>): void {
  if (value === undefined) return;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    for (const key of Object.keys(value).sort()) {
      flatten((value as Record<string, unknown>)[key], prefix === '' ? key : `${prefix}.${key}`, into);
    }
    return;
  }
  into[prefix] = value;
}

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
