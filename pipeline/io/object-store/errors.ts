import { AirError, type AirErrorCode } from '../../errors.js';

interface SdkError {
  readonly name?: string;
  readonly code?: string;
  readonly message?: string;
  readonly $metadata?: { readonly httpStatusCode?: number; readonly attempts?: number };
}

/**
 * One line for a failed storage request, built from the error's name and status, never from its text: a
 * server's message may quote request headers, and a credential must never reach a log, a ledger or a report.
 */
export function storageError(error: unknown, object: string, where: string): AirError {
  if (error instanceof AirError) return error;
  const e = (typeof error === 'object' && error !== null ? error : {}) as SdkError;
  const name = e.name ?? 'Error';
  const status = e.$metadata?.httpStatusCode;
  const attempts = e.$metadata?.attempts;
  const fail = (code: AirErrorCode, detail: string): AirError =>
    new AirError(code, `${object}: ${detail}`, { cause: error });
  if (name === 'NoSuchBucket') return fail('AIR_STORAGE_NOT_FOUND', `no such bucket at ${where}`);
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
    return fail('AIR_STORAGE_NOT_FOUND', `no such object (or bucket) at ${where}`);
  }
  if (name === 'PreconditionFailed' || status === 412) {
    return fail(
      'AIR_STORAGE_CHANGED',
      'the object was replaced while it was being read (its ETag changed); run again to read the new one',
    );
  }
  if (name === 'CredentialsProviderError') {
    return fail(
      'AIR_STORAGE_DENIED',
      'no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in ~/.aws/credentials',
    );
  }
  if (
    ['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'Forbidden', 'ExpiredToken'].includes(
      name,
    ) ||
    status === 401 ||
    status === 403
  ) {
    return fail(
      'AIR_STORAGE_DENIED',
      `${where} refused the credentials (${name}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile's keys and permissions`,
    );
  }
  const tries = attempts === undefined ? '' : ` after ${attempts} attempts`;
  if (status !== undefined && status >= 500) {
    return fail(
      'AIR_STORAGE_UNAVAILABLE',
      `${where} kept failing (${status} ${name})${tries}; try again later`,
    );
  }
  const network = e.code ?? name;
  if (/^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EPIPE|TimeoutError)$/.test(network)) {
    return fail('AIR_STORAGE_UNAVAILABLE', `cannot reach ${where} (${network})${tries}`);
  }
  return fail(
    'AIR_STORAGE_UNAVAILABLE',
    `request to ${where} failed (${name}${status === undefined ? '' : ` ${status}`})${tries}`,
  );
}
