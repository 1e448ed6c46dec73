import { UsageError } from '../../errors.js';

/** An object or a prefix in S3-compatible storage: `s3://bucket/key`. */
export interface ObjectUrl {
  readonly bucket: string;
  readonly key: string;
}

const SCHEME = 's3://';

/** Whether an input or output names object storage rather than a local path. */
export function isObjectUrl(value: string): boolean {
  return value.startsWith(SCHEME);
}

export function parseObjectUrl(value: string): ObjectUrl {
  if (!isObjectUrl(value)) throw new UsageError(`${value}: not an s3:// URL`);
  const rest = value.slice(SCHEME.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  // Bucket names are 3-63 characters of lower-case letters, digits, dots and hyphens (S3's rule).
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new UsageError(`${value}: "${bucket}" is not a valid bucket name`);
  }
  return { bucket, key: slash < 0 ? '' : rest.slice(slash + 1) };
}

export function formatObjectUrl(url: ObjectUrl): string {
  return `${SCHEME}${url.bucket}/${url.key}`;
}

/** The object `name` under a prefix URL (`s3://b/out/` + `part-00000.parquet`). */
export function objectUnder(prefix: ObjectUrl, name: string): ObjectUrl {
  const base = prefix.key === '' || prefix.key.endsWith('/') ? prefix.key : `${prefix.key}/`;
  return { bucket: prefix.bucket, key: `${base}${name}` };
}
