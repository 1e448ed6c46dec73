import { InvalidArgumentError } from 'commander';

/** Parsers for command-line values; commander turns their errors into a usage message and exit code 2. */
function numeric(value: string): number {
  const n = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError('expected a number');
  return n;
}

export function integerArg(value: string): number {
  const n = numeric(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a whole number');
  return n;
}

/** A whole number ≥ 0. */
export function countArg(value: string): number {
  const n = integerArg(value);
  if (n < 0) throw new InvalidArgumentError('expected a whole number ≥ 0');
  return n;
}

/** A whole number > 0. */
export function positiveIntArg(value: string): number {
  const n = integerArg(value);
  if (n <= 0) throw new InvalidArgumentError('expected a whole number > 0');
  return n;
}

/** A number ≥ 0. */
export function nonNegativeArg(value: string): number {
  const n = numeric(value);
  if (n < 0) throw new InvalidArgumentError('expected a number ≥ 0');
  return n;
}

/** A number > 0. */
export function positiveArg(value: string): number {
  const n = numeric(value);
  if (n <= 0) throw new InvalidArgumentError('expected a number > 0');
  return n;
}

/** A fraction in [0, 1]. */
export function rateArg(value: string): number {
  const n = numeric(value);
  if (n < 0 || n > 1) throw new InvalidArgumentError('expected a fraction, 0..1');
  return n;
}

export function portArg(value: string): number {
  const n = countArg(value);
  if (n > 65_535) throw new InvalidArgumentError('expected a port number, 0..65535');
  return n;
}

/** `a, b,c` → ['a', 'b', 'c']. */
export function commaList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
