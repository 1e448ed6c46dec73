import path from 'node:path';
import { ConfigError } from '../pipeline/errors.js';
import { importNodeLlamaCpp } from './local.js';

/**
 * Where a `local:` model's file comes from: a path (`local:models/x.gguf`) or a model URI that node-llama-cpp
 * resolves and caches (`local:hf:<user>/<repo>/<file>.gguf`). A URI is downloaded once, into `directory`
 * (default ~/.node-llama-cpp/models), and found there on every later run without the network.
 */
export const DEFAULT_LOCAL_MODEL =
  'local:hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf';

export interface ModelFileOptions {
  /** Where URIs are cached; node-llama-cpp's default when unset. */
  readonly directory?: string;
  /** false: fail instead of downloading a model that is not cached yet. */
  readonly download?: boolean;
  readonly log?: (line: string) => void;
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

/** Resolves a `local:` location to a file on disk, downloading a URI's file only when it is not cached. */
export async function resolveModelFile(location: string, options: ModelFileOptions = {}): Promise<string> {
  if (!isModelUri(location)) return path.resolve(location);
  const lib = await importNodeLlamaCpp(() => import('node-llama-cpp'));
  const fileName = cachedFileName(location);
  try {
    return await lib.resolveModelFile(location, {
      directory: options.directory,
      fileName,
      download: options.download === false ? false : 'auto',
      cli: false,
      onProgress: ({ downloadedSize, totalSize }) =>
        options.log?.(
          `downloading ${fileName}: ${Math.round(downloadedSize / 1e6)} of ${Math.round(totalSize / 1e6)} MB`,
        ),
    });
  } catch (error) {
    const detail = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new ConfigError(
      `cannot resolve the model ${location}: ${detail} (a model URI is downloaded once, which needs internet; ` +
        `or give local:<path.gguf> to a file you have)`,
    );
  }
}
