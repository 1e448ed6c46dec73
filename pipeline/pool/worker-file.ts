import { fileURLToPath } from 'node:url';

/**
 * Where a worker module lives and how to start it. Compiled runs start `.js` workers directly; runs from
 * source (tests) start the `.ts` file through tsx, the only place a TypeScript loader is used.
 */
export function workerEntry(file: string | URL): { filename: string; execArgv: string[] } {
  const filename = typeof file === 'string' ? file : fileURLToPath(file);
  return { filename, execArgv: filename.endsWith('.ts') ? ['--import', 'tsx'] : [] };
}

/** The sibling module `name` (without extension) of `importMetaUrl`, with the extension the caller runs as. */
export function siblingModule(importMetaUrl: string, name: string): URL {
  const extension = importMetaUrl.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./${name}${extension}`, importMetaUrl);
}
