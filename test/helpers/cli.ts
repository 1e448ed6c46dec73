import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');
/** The compiled CLI, as `npx air` runs it (`npm test` builds before running vitest). */
export const AIR = path.join(ROOT, 'dist/cli/air.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function startAir(
  args: readonly string[],
  cwd = ROOT,
  env?: NodeJS.ProcessEnv,
): { child: ChildProcess; done: Promise<CliResult> } {
  if (!existsSync(AIR)) throw new Error(`${AIR} is missing: run "npm run build" first`);
  const child = spawn(process.execPath, [AIR, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

export function runAir(args: readonly string[], cwd = ROOT, env?: NodeJS.ProcessEnv): Promise<CliResult> {
  return startAir(args, cwd, env).done;
}
