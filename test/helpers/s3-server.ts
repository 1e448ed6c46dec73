import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';

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
 * A proxy on 127.0.0.1 in front of an S3 server that answers its first `failFirst` requests with 503 SlowDown (as
 * S3 does when throttling), then forwards every request unchanged.
 */
export interface StormProxy {
  readonly endpoint: string;
  /** Requests answered 503 so far. */
  readonly refused: () => number;
  /** Every request seen, as "METHOD path?query" and its Range header if any ("GET /b/k bytes=0-99"). */
  readonly requests: () => readonly string[];
  close(): Promise<void>;
}

export async function startStormProxy(target: string, failFirst: number): Promise<StormProxy> {
  const { createServer, request } = await import('node:http');
  const upstream = new URL(target);
  let refused = 0;
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}${req.headers.range === undefined ? '' : ` ${req.headers.range}`}`);
    if (refused < failFirst) {
      refused++;
      req.resume();
      res.writeHead(503, { 'content-type': 'application/xml' });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>' +
          '<Message>Please reduce your request rate.</Message></Error>',
      );
      return;
    }
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
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    refused: () => refused,
    requests: () => seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
