import path from 'node:path';
import { Accounting } from '../llm/accounting.js';
import { openResponseCache, type ResponseCache } from '../llm/cache.js';
import { HttpLlmClient } from '../llm/client.js';
import {
  endpointSchema,
  resolveEndpoint,
  type EndpointConfig,
  type ResolvedEndpoint,
} from '../llm/endpoint.js';
import { isLocalSpec, parseLocalSpec } from '../llm/local.js';
import { DEFAULT_LOCAL_MODEL, resolveModelFile, type DownloadProgress } from '../llm/model-files.js';
import { startSimulator, type Simulator } from '../llm/simulator/index.js';
import { ConfigError } from '../pipeline/errors.js';
import type { LlmConfig } from './config.js';

export const LLM_ROLES = ['guidance', 'student'] as const;
export type LlmRole = (typeof LLM_ROLES)[number];
export const LLM_CACHE_FILE = 'llm-cache.sqlite';

export interface LlmSetup {
  readonly client: HttpLlmClient;
  readonly accounting: Accounting;
  readonly cache: ResponseCache;
  /** The model name of each role, as configured (written with every row). */
  readonly models: Readonly<Record<LlmRole, string>>;
  /** The in-process simulator in `sim` mode. */
  readonly simulator: Simulator | undefined;
  close(): Promise<void>;
}

/**
 * Builds the run's LLM client from the config: resolves every role's endpoint (reading API keys from the
 * environment variables the config names), opens the response cache beside the output, and in `sim` mode
 * starts a simulator on 127.0.0.1 serving both roles.
 */
export async function setUpLlm(
  config: LlmConfig,
  outputDir: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  log?: (line: string) => void,
  /** Where calls are accounted; the run passes the one its embedding calls go to as well. */
  accounting: Accounting = new Accounting(config.prices),
): Promise<LlmSetup> {
  let simulator: Simulator | undefined;
  const endpoints: ResolvedEndpoint[] = [];
  if (config.mode === 'sim') {
    const { faults, ...capacity } = config.simulator;
    simulator = await startSimulator({
      ...capacity,
      ...faults,
      models: ['air-sim-guidance', 'air-sim-student'],
    });
    for (const role of LLM_ROLES) {
      const given = config[role];
      endpoints.push(
        resolveEndpoint(
          role,
          endpointSchema.parse({
            ...given,
            baseUrl: simulator.url,
            endpoints: undefined,
            model: `air-sim-${role}`,
            apiKeyEnv: undefined,
          }),
          env,
        ),
      );
    }
  } else {
    const chosen = roleEndpoints(config);
    if (config.guidance === undefined && config.student === undefined) {
      log?.(
        `no LLM endpoint configured: both roles use ${DEFAULT_LOCAL_MODEL} inside air (fetched once if not cached)`,
      );
    }
    for (const role of LLM_ROLES) endpoints.push(resolveEndpoint(role, chosen[role], env));
  }
  const cache = openResponseCache(
    config.cache && outputDir !== undefined ? path.join(outputDir, LLM_CACHE_FILE) : undefined,
  );
  const client = new HttpLlmClient({
    endpoints,
    cache,
    recorder: accounting,
    replicas: { sharers: config.processes },
  });
  const models = { guidance: endpoints[0]!.model, student: endpoints[1]!.model };
  return {
    client,
    models,
    accounting,
    cache,
    simulator,
    async close() {
      await client.close();
      cache.close();
      await simulator?.close();
    },
  };
}

/**
 * The endpoint each role uses in `endpoints` mode: the configured ones, or, when none is, the default small model
 * inside air for both roles. Refuses a config that names one role and not the other.
 */
function roleEndpoints(config: LlmConfig): Record<LlmRole, EndpointConfig> {
  if (config.guidance === undefined && config.student === undefined) {
    const local = { threads: 2, parallel: 2, contextSize: 4096, modelsDir: config.modelsDir };
    const endpoint = endpointSchema.parse({ model: DEFAULT_LOCAL_MODEL, local });
    return { guidance: endpoint, student: endpoint };
  }
  const chosen: Partial<Record<LlmRole, EndpointConfig>> = {};
  for (const role of LLM_ROLES) {
    const endpoint = config[role];
    if (endpoint === undefined) {
      throw new ConfigError(
        `llm.${role} is not configured: pass --${role}-url and --${role}-model, set llm.${role} in the config, or use --llm sim`,
      );
    }
    chosen[role] = endpoint;
  }
  return chosen as Record<LlmRole, EndpointConfig>;
}

/**
 * Finds or downloads every embedded model's file before the run reads any input, so a model that cannot be had
 * fails the run in seconds instead of after stage 0, and a download shows its progress. The file is then found in
 * the model cache when the model loads.
 */
export async function resolveLocalModels(
  config: LlmConfig,
  options: { signal?: AbortSignal; onDownload?: (progress: DownloadProgress) => void } = {},
): Promise<void> {
  if (config.mode === 'sim') return;
  const seen = new Set<string>();
  for (const endpoint of Object.values(roleEndpoints(config))) {
    if (!isLocalSpec(endpoint.model)) continue;
    const location = parseLocalSpec(endpoint.model).path;
    if (seen.has(location)) continue;
    seen.add(location);
    await resolveModelFile(location, {
      directory: endpoint.local.modelsDir,
      signal: options.signal,
      onProgress: options.onDownload,
    });
  }
}
