import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';
import { ObjectStore } from '../../pipeline/io/object-store/store.js';

/** A real S3-compatible server (s3rver) on 127.0.0.1, its buckets folders in a temporary directory. */
export interface S3Server {
  readonly endpoint: string;
  /** The environment a client of it needs: s3rver's fixed key pair, and no other credential source. */
  readonly env: Record<string, string>;
  close(): Promise<void>;
}

export const S3RVER_KEY = 'S3RVER';

export async function startS3Server(buckets: readonly string[], port = 0): Promise<S3Server> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'air-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port,
    silent: true,
    directory,
    configureBuckets: buckets.map((name) => ({ name })),
  });
  const address = await server.run();
  const endpoint = `http://127.0.0.1:${address.port}`;
  return {
    endpoint,
    env: s3Env(S3RVER_KEY, S3RVER_KEY),
    close: async () => {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/**
 * Credentials in the environment, and every other source of them turned off: no profile files, and no EC2
 * metadata lookup (it would send a request off this machine).
 */
export function s3Env(accessKeyId: string, secretAccessKey: string): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: accessKeyId,
    AWS_SECRET_ACCESS_KEY: secretAccessKey,
    AWS_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/air-test-credentials',
    AWS_CONFIG_FILE: '/nonexistent/air-test-config',
  };
}

/**
 * air's client of `server` for this process: the server's key pair goes into process.env, where the SDK's
 * credential chain finds it (as an air process is given it), and the SDK's Node-version notice is silenced.
 */
export function s3Client(server: S3Server, multipartMB: number): ObjectStore {
  Object.assign(process.env, server.env, { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' });
  return new ObjectStore({ endpoint: server.endpoint, maxAttempts: 3, uploadConcurrency: 4, multipartMB });
}

/** A proxy on 127.0.0.1 in front of an S3 server (see startS3Proxy). */
export interface S3Proxy {
  readonly endpoint: string;
  /** Every request seen, as "METHOD path?query" and its Range header if any ("GET /b/k bytes=0-99"). */
  readonly requests: () => readonly string[];
  close(): Promise<void>;
}

/**
 * A proxy on 127.0.0.1 in front of an S3 server: each request is recorded and offered to `answer`, which may
 * answer it itself (and return true) as a misbehaving or stricter server would; the others are forwarded
 * unchanged.
 */
export async function startS3Proxy(
  target: string,
  answer: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean> = () => false,
): Promise<S3Proxy> {
  const upstream = new URL(target);
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}${req.headers.range === undefined ? '' : ` ${req.headers.range}`}`);
    void (async () => {
      if (await answer(req, res)) return;
      const forward = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (reply) => {
          res.writeHead(reply.statusCode ?? 502, reply.headers);
          reply.pipe(res);
        },
      );
      forward.on('error', () => res.destroy());
      req.pipe(forward);
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests: () => seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An S3 error reply, as the server writes it. */
export function s3ErrorReply(res: ServerResponse, status: number, code: string, message = ''): void {
  res.writeHead(status, { 'content-type': 'application/xml' });
  res.end(
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
      (message === '' ? '' : `<Message>${message}</Message>`) +
      '</Error>',
  );
}

export interface StormProxy extends S3Proxy {
  /** Requests answered 503 so far. */
  readonly refused: () => number;
}

/**
 * A proxy that answers its first `failFirst` requests with 503 SlowDown (as S3 does when throttling), then
 * forwards every request unchanged.
 */
export async function startStormProxy(target: string, failFirst: number): Promise<StormProxy> {
  let refused = 0;
  const proxy = await startS3Proxy(target, (req, res) => {
    if (refused >= failFirst) return false;
    refused++;
    req.resume();
    s3ErrorReply(res, 503, 'SlowDown', 'Please reduce your request rate.');
    return true;
  });
  return { ...proxy, refused: () => refused };
}
