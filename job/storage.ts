import { configureObjectStore } from '../pipeline/io/object-store/store.js';
import { storageConfigSchema, type RunConfig } from './config.js';

/** Points the process's object store at the config's storage section (before any s3:// path is touched). */
export function useStorage(config: Pick<RunConfig, 'storage'>): void {
  const { endpoint, region, pathStyle, maxAttempts, uploadConcurrency, multipartMB } = config.storage;
  configureObjectStore({ endpoint, region, pathStyle, maxAttempts, uploadConcurrency, multipartMB });
}

/** The store at `endpoint` with default settings: for commands that read a job's root before any config. */
export function useStorageEndpoint(endpoint: string | undefined): void {
  useStorage({ storage: storageConfigSchema.parse({ endpoint }) });
}
