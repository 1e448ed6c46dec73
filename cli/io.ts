import { AirError } from '../pipeline/errors.js';

export const EXIT = { ok: 0, failure: 1, usage: 2, sigint: 130, sigterm: 143 } as const;

export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether stderr is a terminal (live progress table) or not (periodic log lines). */
  isTTY: boolean;
}

export const defaultIO: CliIO = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  isTTY: process.stderr.isTTY === true,
};

export function isUsageError(error: unknown): boolean {
  return error instanceof AirError && (error.code === 'AIR_USAGE' || error.code === 'AIR_CONFIG_INVALID');
}
