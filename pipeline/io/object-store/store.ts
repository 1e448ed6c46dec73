import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { pipeline as pipe } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { AsyncBuffer } from 'hyparquet';
import picomatch from 'picomatch';
import { AirError } from '../../errors.js';
import { storageError } from './errors.js';
import { formatObjectUrl, parseObjectUrl, type ObjectUrl } from './url.js';

/**
 * Where S3-compatible storage is and how to talk to it. Credentials are never here: the SDK's standard chain
 * finds them (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE and the shared
 * ~/.aws/credentials and ~/.aws/config files, then web identity, ECS and EC2 roles).
 */
export interface ObjectStoreSettings {
  /** An S3-compatible server (MinIO, Ceph, R2, GCS interoperability); unset: AWS S3. */
  readonly endpoint?: string;
  /** Unset: AWS_REGION / the profile's region, else us-east-1. */
  readonly region?: string;
  /** Address buckets as endpoint/bucket rather than bucket.endpoint (default: on with an endpoint). */
  readonly pathStyle?: boolean;
  /** Attempts per request for throttling (503 SlowDown), 5xx and connection failures. */
  readonly maxAttempts: number;
  /** Parts of one multipart upload sent at once. */
  readonly uploadConcurrency: number;
  /** Files larger than this go up in parts of this size (S3's floor is 5 MiB). */
  readonly multipartMB: number;
}

export interface ObjectInfo {
  readonly url: ObjectUrl;
  readonly size: number;
  /** The object's ETag (quotes removed): changes whenever its content is replaced. */
  readonly etag: string;
  /** When it was last written (ms since the epoch; 0 when the server did not say). */
  readonly modifiedMs: number;
}

/** One client per process for the settings last configured (a job has one storage section). */
let configured: ObjectStoreSettings = { maxAttempts: 10, uploadConcurrency: 4, multipartMB: 64 };
let current: ObjectStore | undefined;

export function configureObjectStore(settings: ObjectStoreSettings): void {
  if (current !== undefined && JSON.stringify(settings) === JSON.stringify(configured)) return;
  current?.close();
  current = undefined;
  configured = settings;
}

/** The process's object store (created on first use, so local-only runs never build an S3 client). */
export function objectStore(): ObjectStore {
  current ??= new ObjectStore(configured);
  return current;
}

/**
 * The few object-storage operations air needs: list (with a glob), head, ranged reads, downloads, uploads.
 * Every failure becomes one AirError line naming the object (storageError); the SDK retries transient ones.
 */
export class ObjectStore {
  private readonly client: S3Client;

  constructor(private readonly settings: ObjectStoreSettings) {
    // The SDK warns on every start under Node 20 that its releases after January 2027 need Node 22; air pins a
    // release that supports Node 20 (README, "Object storage"), so the notice says nothing actionable here.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const endpoint = settings.endpoint;
    this.client = new S3Client({
      endpoint,
      region: settings.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      forcePathStyle: settings.pathStyle ?? (endpoint ?? envEndpoint()) !== undefined,
      maxAttempts: settings.maxAttempts,
      // Checksums only where S3 requires them: several S3-compatible servers reject the trailing checksums the
      // SDK sends by default since early 2025.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  /** Where requests go, for messages (never a credential). */
  get where(): string {
    return this.settings.endpoint ?? envEndpoint() ?? 'AWS S3';
  }

  /**
   * The objects a URL names: one object, every object under a prefix ending in `/`, or those matching a glob
   * in the key (`*` within a path segment, `**` across them). Sorted by key.
   */
  async list(value: string): Promise<ObjectInfo[]> {
    const url = parseObjectUrl(value);
    const base = fixedPrefix(url.key);
    const isGlob = base.length !== url.key.length;
    if (!isGlob && url.key !== '' && !url.key.endsWith('/')) return [await this.head(url)];
    const match = isGlob ? picomatch(url.key, { dot: false }) : undefined;
    const found: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      const page = await this.send(
        () =>
          this.client.send(
            new ListObjectsV2Command({ Bucket: url.bucket, Prefix: base, ContinuationToken: token }),
          ),
        url,
      );
      for (const item of page.Contents ?? []) {
        if (item.Key === undefined || item.Key.endsWith('/')) continue;
        if (match !== undefined && !match(item.Key)) continue;
        found.push({
          url: { bucket: url.bucket, key: item.Key },
          size: item.Size ?? 0,
          etag: unquote(item.ETag),
          modifiedMs: item.LastModified?.getTime() ?? 0,
        });
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return found.sort((a, b) => (a.url.key < b.url.key ? -1 : a.url.key > b.url.key ? 1 : 0));
  }

  async head(url: ObjectUrl): Promise<ObjectInfo> {
    const head = await this.send(
      () => this.client.send(new HeadObjectCommand({ Bucket: url.bucket, Key: url.key })),
      url,
    );
    return {
      url,
      size: head.ContentLength ?? 0,
      etag: unquote(head.ETag),
      modifiedMs: head.LastModified?.getTime() ?? 0,
    };
  }

  /** Whether an object exists (false on 404; other failures throw). */
  async exists(url: ObjectUrl): Promise<boolean> {
    try {
      await this.head(url);
      return true;
    } catch (error) {
      if (isMissingObject(error)) return false;
      throw error;
    }
  }

  /**
   * Bytes [start, end) of an object. With `etag`, only of that version: an object replaced since it was
   * listed fails (412) instead of mixing two files' bytes.
   */
  async read(url: ObjectUrl, start: number, end: number, etag?: string): Promise<Uint8Array> {
    if (end <= start) return new Uint8Array(0);
    return this.send(
      async () => (await this.getRange(url, start, end, etag)).Body!.transformToByteArray(),
      url,
    );
  }

  /**
   * Streams bytes [start, end) of an object into `file` at offset `start` (the file is opened for update, so
   * other ranges of it stay): memory stays at the stream's buffers whatever the range's size.
   */
  async download(url: ObjectUrl, file: string, start: number, end: number, etag?: string): Promise<void> {
    if (end <= start) return;
    await this.send(async () => {
      const reply = await this.getRange(url, start, end, etag);
      await pipe(reply.Body as Readable, createWriteStream(file, { flags: 'r+', start }));
    }, url);
  }

  /** One ranged GET of bytes [start, end), of the version `etag` when given (412 once it was replaced). */
  private getRange(url: ObjectUrl, start: number, end: number, etag: string | undefined) {
    return this.client.send(
      new GetObjectCommand({
        Bucket: url.bucket,
        Key: url.key,
        Range: `bytes=${start}-${end - 1}`,
        IfMatch: etag === undefined ? undefined : `"${etag}"`,
      }),
    );
  }

  /** A small object as text; undefined when there is none. */
  async getText(url: ObjectUrl): Promise<string | undefined> {
    try {
      return await this.send(async () => {
        const reply = await this.client.send(new GetObjectCommand({ Bucket: url.bucket, Key: url.key }));
        return reply.Body!.transformToString('utf8');
      }, url);
    } catch (error) {
      if (isMissingObject(error)) return undefined;
      throw error;
    }
  }

  /** One PUT: atomic, readers see the old object or the new one. */
  async putText(url: ObjectUrl, body: string | Uint8Array): Promise<void> {
    await this.send(
      () => this.client.send(new PutObjectCommand({ Bucket: url.bucket, Key: url.key, Body: body })),
      url,
    );
  }

  /**
   * One PUT that only creates: `If-None-Match: *`, false when the object exists (412, or 409 when another
   * conditional write to it is in flight). AWS S3 and MinIO honour it; servers that ignore it (s3rver) simply
   * write, so a caller must read the object back to learn who won (job/plan/job-root.ts).
   */
  async putIfAbsent(url: ObjectUrl, body: string): Promise<boolean> {
    try {
      await this.client.send(
        new PutObjectCommand({ Bucket: url.bucket, Key: url.key, Body: body, IfNoneMatch: '*' }),
      );
      return true;
    } catch (error) {
      const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 412 || status === 409) return false;
      throw storageError(error, formatObjectUrl(url), this.where);
    }
  }

  /** Deletes an object (S3 answers a missing one as deleted too). */
  async delete(url: ObjectUrl): Promise<void> {
    await this.send(
      () => this.client.send(new DeleteObjectCommand({ Bucket: url.bucket, Key: url.key })),
      url,
    );
  }

  /**
   * Uploads a local file: one PUT up to `multipartMB`, a multipart upload of that part size beyond it, with
   * `uploadConcurrency` parts in flight. Each part is a buffer, so the SDK can retry it.
   */
  async upload(file: string, url: ObjectUrl): Promise<void> {
    const partSize = Math.max(5, this.settings.multipartMB) * 1024 * 1024;
    await this.send(async () => {
      const { size } = await import('node:fs/promises').then((fs) => fs.stat(file));
      if (size <= partSize) {
        await this.client.send(
          new PutObjectCommand({ Bucket: url.bucket, Key: url.key, Body: await readFile(file) }),
        );
        return;
      }
      const { createReadStream } = await import('node:fs');
      const upload = new Upload({
        client: this.client,
        params: { Bucket: url.bucket, Key: url.key, Body: createReadStream(file) },
        partSize,
        queueSize: this.settings.uploadConcurrency,
        leavePartsOnError: false,
      });
      await upload.done();
    }, url);
  }

  /** An object as hyparquet's AsyncBuffer: every slice is a ranged GET of that version. */
  async asyncBuffer(url: ObjectUrl): Promise<AsyncBuffer> {
    const { size, etag } = await this.head(url);
    return {
      byteLength: size,
      slice: async (start, end) => {
        const bytes = await this.read(url, start, end ?? size, etag);
        return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      },
    };
  }

  close(): void {
    this.client.destroy();
  }

  private async send<T>(request: () => Promise<T>, url: ObjectUrl): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await request();
      } catch (error) {
        // The SDK retries a request until its reply starts; a connection lost while the body streams is ours.
        if (attempt < BODY_ATTEMPTS && lostMidBody(error)) {
          await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
          continue;
        }
        throw storageError(error, formatObjectUrl(url), this.where);
      }
    }
  }
}

const BODY_ATTEMPTS = 4;

/** Not found, and not because the bucket is missing (which a caller must hear about). */
export function isMissingObject(error: unknown): boolean {
  if (!(error instanceof AirError) || error.code !== 'AIR_STORAGE_NOT_FOUND') return false;
  return (error.cause as { name?: unknown } | undefined)?.name !== 'NoSuchBucket';
}

/** A reply cut off after its headers: not an SDK error (no $metadata), a reset or an aborted stream. */
function lostMidBody(error: unknown): boolean {
  if (typeof error !== 'object' || error === null || '$metadata' in error) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  return (
    (typeof code === 'string' && /^(ECONNRESET|EPIPE|ETIMEDOUT|ERR_STREAM_PREMATURE_CLOSE)$/.test(code)) ||
    message === 'aborted'
  );
}

/** The endpoint the SDK itself takes from the environment when none is configured. */
function envEndpoint(): string | undefined {
  return process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
}

/** The key before the first glob character: what ListObjectsV2 can narrow by. */
function fixedPrefix(key: string): string {
  const first = key.search(/[*?[{]/);
  return first < 0 ? key : key.slice(0, first);
}

function unquote(etag: string | undefined): string {
  return (etag ?? '').replaceAll('"', '');
}
