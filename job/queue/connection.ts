import { createHash } from 'node:crypto';
import type { RedisOptions } from 'bullmq';
import type { Plan } from '../../schemas/plan.js';
import { QueueError } from './errors.js';

/**
 * ioredis options for `redis://[user:password@]host:port/db` (or `rediss://` for TLS). BullMQ's workers need
 * `maxRetriesPerRequest: null`: a command waits through a Redis restart instead of failing the worker.
 * `fail-fast` (air enqueue, a one-off command) gives up after a few seconds of no answer instead.
 */
export function redisOptions(url: string, mode: 'wait' | 'fail-fast' = 'wait'): RedisOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new QueueError('AIR_QUEUE_INVALID', `--queue ${url}: not a URL (redis://host:port/db)`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new QueueError('AIR_QUEUE_INVALID', `--queue ${url}: not a redis:// or rediss:// URL`);
  }
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) {
    throw new QueueError('AIR_QUEUE_INVALID', `--queue ${url}: the path must be a database number`);
  }
  return {
    host: parsed.hostname === '' ? '127.0.0.1' : parsed.hostname.replace(/^\[|\]$/g, ''),
    port: parsed.port === '' ? 6379 : Number(parsed.port),
    db: db === '' ? 0 : Number(db),
    ...(parsed.username === '' ? {} : { username: decodeURIComponent(parsed.username) }),
    ...(parsed.password === '' ? {} : { password: decodeURIComponent(parsed.password) }),
    ...(parsed.protocol === 'rediss:' ? { tls: {} } : {}),
    ...(mode === 'wait'
      ? { maxRetriesPerRequest: null }
      : { maxRetriesPerRequest: 1, retryStrategy: (times: number) => (times > 10 ? null : 300) }),
  };
}

/**
 * The BullMQ queue of a plan: named after the plan itself (its fingerprint, creation time and shards), so two
 * jobs on one Redis never share a queue, and enqueueing the same plan again finds the same one.
 */
export function queueName(plan: Plan): string {
  const identity = JSON.stringify([
    plan.fingerprint,
    plan.createdAt,
    plan.shards.map((s) => [s.label, s.footerHash]),
  ]);
  return `air-${createHash('sha256').update(identity).digest('hex').slice(0, 16)}`;
}

/** A unit's job id: fixed by the unit, so adding it twice adds nothing (BullMQ ignores a known id). */
export function unitJobId(unit: number): string {
  return `unit-${String(unit).padStart(5, '0')}`;
}

/** What a unit's job carries; the worker reads everything else from its own copy of the plan. */
export interface UnitJobData {
  readonly unit: number;
  readonly label: string;
}
