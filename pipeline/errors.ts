/**
 * Every error air raises on purpose is an AirError with a stable `code`, so callers (the CLI, the ledger,
 * tests) branch on codes rather than message text. Messages are one line a person can act on.
 */
export type AirErrorCode =
  | 'AIR_USAGE'
  | 'AIR_CONFIG_INVALID'
  | 'AIR_INPUT_NOT_FOUND'
  | 'AIR_PARQUET_NOT_PARQUET'
  | 'AIR_PARQUET_CORRUPT'
  | 'AIR_PARQUET_ENCRYPTED'
  | 'AIR_PARQUET_INCOMPLETE'
  | 'AIR_PARQUET_MISSING_COLUMN'
  | 'AIR_PARQUET_COLUMN_TYPE'
  | 'AIR_PARQUET_WRITE'
  | 'AIR_ROW_INVALID'
  | 'AIR_LEDGER_UNBALANCED'
  | 'AIR_CANCELLED'
  | 'AIR_OPERATOR_FAILED'
  | 'AIR_FAILURE_RATE'
  | 'AIR_RESUME_MISMATCH'
  | 'AIR_PLAN_MISMATCH'
  | 'AIR_PLAN_STALE'
  | 'AIR_RANKS_INCOMPLETE'
  | 'AIR_STORAGE_NOT_FOUND'
  | 'AIR_STORAGE_DENIED'
  | 'AIR_STORAGE_UNAVAILABLE'
  | 'AIR_STORAGE_CHANGED';

export class AirError<C extends string = AirErrorCode> extends Error {
  readonly code: C;

  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AirError';
    this.code = code;
  }
}

/** Wrong command-line usage: exit code 2. */
export class UsageError extends AirError<AirErrorCode> {
  constructor(message: string) {
    super('AIR_USAGE', message);
    this.name = 'UsageError';
  }
}

/** A config file or flag value that fails validation: exit code 2; the message names the bad key. */
export class ConfigError extends AirError<AirErrorCode> {
  constructor(message: string) {
    super('AIR_CONFIG_INVALID', message);
    this.name = 'ConfigError';
  }
}

/** A Parquet input that cannot be read; names the file and, where known, the row group. */
export class ParquetInputError extends AirError<AirErrorCode> {
  readonly file: string;

  constructor(code: AirErrorCode, file: string, detail: string, options?: { cause?: unknown }) {
    super(code, `${file}: ${detail}`, options);
    this.name = 'ParquetInputError';
    this.file = file;
  }
}

/** The run's accounting does not add up: always a bug, and it fails the run. */
export class LedgerError extends AirError<AirErrorCode> {
  constructor(message: string) {
    super('AIR_LEDGER_UNBALANCED', message);
    this.name = 'LedgerError';
  }
}

/**
 * An error that must stop the run rather than fail one record (a refused API key, a dead endpoint): an operator
 * throws it and the engine ends the run cleanly, keeping what was committed.
 */
export function isFatal(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { fatal?: unknown }).fatal === true;
}

/** The error kind recorded in the ledger for a failed record: a stable code where there is one. */
export function errorKind(error: unknown): string {
  if (error instanceof AirError) return error.code;
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.length > 0) return code;
    return error.name || 'Error';
  }
  return 'NonError';
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
