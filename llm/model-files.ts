import path from 'node:path';
import { AirError, ConfigError } from '../pipeline/errors.js';
import { importNodeLlamaCpp } from './local.js';

/**
 * Where a `local:` model's file comes from: a path (`local:models/x.gguf`) or a model URI that node-llama-cpp
 * resolves and caches (`local:hf:<user>/<repo>/<file>.gguf`). A URI is downloaded once, into `directory`
 * (default ~/.node-llama-cpp/models), and found there on every later run without the network.
 */
export const DEFAULT_LOCAL_MODEL =
  'local:hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf';

/** A model download's progress, as a display needs it. */
export interface DownloadProgress {
  readonly file: string;
  readonly downloadedBytes: number;
  readonly totalBytes: number;
  /** Average since the download began; 0 until known. */
  readonly bytesPerSecond: number;
  /** Seconds left at that rate; undefined until known. */
  readonly etaSeconds: number | undefined;
}

export interface ModelFileOptions {
  /** Where URIs are cached; node-llama-cpp's default when unset. */
  readonly directory?: string;
  /** false: fail instead of downloading a model that is not cached yet. */
  readonly download?: boolean;
  /** Aborting stops waiting at once (node-llama-cpp does not stop every phase of a download on its signal). */
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: DownloadProgress) => void;
  /** How long the reachability check of the model's host may take (default 10 s). */
  readonly probeTimeoutMs?: number;
}

export function isModelUri(location: string): boolean {
  return /^(hf:|huggingface:|https?:\/\/)/i.test(location);
}

/** The file name a URI is cached under: its last path segment. */
export function cachedFileName(uri: string): string {
  const name = uri.split(/[/:]/).pop() ?? '';
  if (!/\.gguf$/i.test(name)) throw new ConfigError(`model URI "${uri}" must name a .gguf file`);
  return name;
}

/**
 * The server a URI downloads from: a URL's origin; for `hf:` URIs Hugging Face's, or the mirror named by
 * MODEL_ENDPOINT or HF_ENDPOINT (node-llama-cpp reads the same variables in that order).
 */
export function downloadOrigin(uri: string, env: NodeJS.ProcessEnv = process.env): string {
  if (/^https?:\/\//i.test(uri)) return new URL(uri).origin;
  return new URL(env.MODEL_ENDPOINT ?? env.HF_ENDPOINT ?? 'https://huggingface.co').origin;
}

/**
 * Resolves a `local:` location to a file on disk, downloading a URI's file only when it is not cached. A
 * download first checks that its host answers at all, so an offline machine fails in seconds (node-llama-cpp
 * retries for minutes); an abort ends the wait at once.
 */
export async function resolveModelFile(location: string, options: ModelFileOptions = {}): Promise<string> {
  if (!isModelUri(location)) return path.resolve(location);
  const lib = await importNodeLlamaCpp(() => import('node-llama-cpp'));
  const fileName = cachedFileName(location);
  const failed = (detail: string): ConfigError =>
    new ConfigError(
      `cannot resolve the model ${location}: ${detail} (a model URI is downloaded once, which needs internet; ` +
        `or give local:<path.gguf> to a file you have)`,
    );
  const resolve = (download: 'auto' | false, signal?: AbortSignal) =>
    lib.resolveModelFile(location, {
      directory: options.directory,
      fileName,
      download,
      cli: false,
      signal,
      onProgress: download === false ? undefined : progressReporter(fileName, options.onProgress),
    });
  try {
    // A cached file is found without the network.
    return await resolve(false);
  } catch (error) {
    if (options.download === false) throw failed(firstLine(error));
  }
  const reachable = await probe(downloadOrigin(location), options.probeTimeoutMs ?? 10_000, options.signal);
  if (reachable !== true) throw failed(reachable);
  const download = new AbortController();
  try {
    return await untilAborted(resolve('auto', download.signal), options.signal);
  } catch (error) {
    download.abort();
    if (options.signal?.aborted === true) throw error;
    throw failed(firstLine(error));
  }
}

/** True when the host answers any HTTP status; else why not (the network error's own words). */
async function probe(
  origin: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<true | string> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const either = signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
  try {
    const response = await fetch(origin, { method: 'HEAD', signal: either, redirect: 'manual' });
    await response.body?.cancel();
    return true;
  } catch (error) {
    if (signal?.aborted === true)
      throw new AirError('AIR_CANCELLED', `model download of ${origin} cancelled`);
    if (timeout.aborted) return `${origin} did not answer within ${Math.round(timeoutMs / 1000)} s`;
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    return `${origin} cannot be reached (${cause?.code ?? cause?.message ?? firstLine(error)})`;
  }
}

/** Settles with `work`, or rejects as soon as `signal` aborts (the work itself may go on unobserved). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) return Promise.reject(new AirError('AIR_CANCELLED', 'model download cancelled'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new AirError('AIR_CANCELLED', 'model download cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function progressReporter(
  file: string,
  report: ((progress: DownloadProgress) => void) | undefined,
): ((status: { totalSize: number; downloadedSize: number }) => void) | undefined {
  if (report === undefined) return undefined;
  const started = performance.now();
  return ({ totalSize, downloadedSize }) => {
    const seconds = (performance.now() - started) / 1000;
    const bytesPerSecond = seconds > 0 ? downloadedSize / seconds : 0;
    const etaSeconds =
      bytesPerSecond > 0 && totalSize >= downloadedSize
        ? (totalSize - downloadedSize) / bytesPerSecond
        : undefined;
    report({ file, downloadedBytes: downloadedSize, totalBytes: totalSize, bytesPerSecond, etaSeconds });
  };
}

function firstLine(error: unknown): string {
  return error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
}
