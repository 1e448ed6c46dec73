import { createHash } from 'node:crypto';
import { z } from 'zod';
import { ConfigError } from '../../pipeline/errors.js';

/**
 * The simulator's KV cache with automatic prefix caching, modelled on vLLM's:
 *
 * - A prompt's tokens (chat template included) are cut into blocks of `blockTokens` (16); each full block is named
 *   by a hash chained over every token before it, so two prompts share a block only when their whole prefix up to
 *   its end is identical. The partial last block is never shared.
 * - The cache has room for `kvCacheTokens` tokens, shared by all sequences. A request in service holds its prompt
 *   blocks and the blocks its completion fills; a block nobody holds stays cached, and is evicted least recently
 *   freed first (a finished request's blocks are freed last-first, so a shared prefix outlives its tails).
 * - A request is looked up when it gets a slot: its longest run of cached leading blocks is not prefilled again.
 *   As in vLLM, at least the prompt's last token is always computed (a fully cached prompt recomputes its last
 *   block).
 * - Counters follow vLLM's: `prefix_cache_queries` and `prefix_cache_hits` in tokens (prompt tokens looked up,
 *   prompt tokens found cached); the GPU work is the prefill tokens computed (queries minus hits) and the decode
 *   tokens, summed over time (a scraper diffs two scrapes).
 *
 * The completion's own blocks are not cached for later prompts (vLLM caches them, but an AIR prompt never starts
 * with a previous reply's template). Off (`kvCacheTokens: 0`, the default) every prompt is prefilled in full, and
 * no prefix figures are sent in `usage`.
 */
export const prefixCacheOptionsSchema = z.object({
  /** KV cache size in tokens, all sequences together; 0 turns prefix caching off. */
  kvCacheTokens: z.number().int().nonnegative().default(0),
  /** Tokens per KV block (vLLM's default block size). */
  blockTokens: z.number().int().positive().default(16),
});

export type PrefixCacheOptions = z.input<typeof prefixCacheOptionsSchema>;
export type PrefixCacheConfig = z.output<typeof prefixCacheOptionsSchema>;

export interface PrefixCacheStats {
  /** Prompt tokens looked up (every prompt admitted while the cache is on). */
  readonly queries: number;
  /** Of those, tokens found cached: not prefilled. */
  readonly hits: number;
  /** Prompt tokens computed (queries − hits, plus every prompt while the cache is off). */
  readonly prefillTokens: number;
  /** Completion tokens decoded. */
  readonly decodeTokens: number;
  /** Blocks evicted to make room. */
  readonly evictions: number;
  /** Blocks held or cached now, and the cache's size in blocks. */
  readonly usedBlocks: number;
  readonly totalBlocks: number;
}

/** What `admit` hands back: the tokens the request need not prefill, and how to give its blocks back. */
export interface Admission {
  readonly cachedTokens: number;
  /** Frees the request's blocks (idempotent). */
  release(): void;
}

export function resolvePrefixCache(options: PrefixCacheOptions = {}): PrefixCacheConfig {
  const parsed = prefixCacheOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(
      `simulator prefix cache: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

/** The chained hashes of a token sequence's full blocks. */
export function blockHashes(tokens: readonly string[], blockTokens: number): string[] {
  const hashes: string[] = [];
  let parent = '';
  for (let end = blockTokens; end <= tokens.length; end += blockTokens) {
    const hash = createHash('sha256').update(parent).update('\u0001');
    for (let i = end - blockTokens; i < end; i += 1) hash.update(tokens[i]!).update('\u0000');
    parent = hash.digest('base64');
    hashes.push(parent);
  }
  return hashes;
}

export class PrefixCache {
  readonly config: PrefixCacheConfig;
  private readonly totalBlocks: number;
  /** Every cached block by hash, with how many requests hold it. */
  private readonly blocks = new Map<string, { refs: number }>();
  /** Cached blocks nobody holds, least recently freed first (Map keeps insertion order). */
  private readonly free = new Map<string, true>();
  /** Blocks held by requests in service that are not cached: partial prompt blocks and completions. */
  private privateBlocks = 0;
  private readonly counters = { queries: 0, hits: 0, prefillTokens: 0, decodeTokens: 0, evictions: 0 };

  constructor(options: PrefixCacheOptions = {}) {
    this.config = resolvePrefixCache(options);
    this.totalBlocks = Math.floor(this.config.kvCacheTokens / this.config.blockTokens);
  }

  get enabled(): boolean {
    return this.totalBlocks > 0;
  }

  /**
   * Looks a prompt up as it enters service and holds its blocks (and its completion's) until `release`. With the
   * cache off it only counts the work.
   */
  admit(promptTokens: readonly string[], completionTokens: number): Admission {
    this.counters.decodeTokens += completionTokens;
    if (!this.enabled) {
      this.counters.prefillTokens += promptTokens.length;
      return { cachedTokens: 0, release: () => {} };
    }
    const { blockTokens } = this.config;
    const hashes = blockHashes(promptTokens, blockTokens);
    // The last prompt token is always computed: its logits start the completion.
    const reusable = Math.floor(Math.max(0, promptTokens.length - 1) / blockTokens);
    let hit = 0;
    while (hit < reusable && this.blocks.has(hashes[hit]!)) hit += 1;
    for (const hash of hashes) this.hold(hash);
    const own = Math.ceil((promptTokens.length + completionTokens) / blockTokens) - hashes.length;
    this.privateBlocks += own;
    this.evict();

    const cachedTokens = hit * blockTokens;
    this.counters.queries += promptTokens.length;
    this.counters.hits += cachedTokens;
    this.counters.prefillTokens += promptTokens.length - cachedTokens;
    let released = false;
    return {
      cachedTokens,
      release: () => {
        if (released) return;
        released = true;
        this.privateBlocks -= own;
        // Last block first: a shared prefix is evicted after the tails that hang from it.
        for (let i = hashes.length - 1; i >= 0; i -= 1) this.unhold(hashes[i]!);
        this.evict();
      },
    };
  }

  stats(): PrefixCacheStats {
    return {
      ...this.counters,
      usedBlocks: this.blocks.size + this.privateBlocks,
      totalBlocks: this.totalBlocks,
    };
  }

  private hold(hash: string): void {
    const block = this.blocks.get(hash);
    if (block === undefined) {
      this.blocks.set(hash, { refs: 1 });
      return;
    }
    if (block.refs === 0) this.free.delete(hash);
    block.refs += 1;
  }

  private unhold(hash: string): void {
    const block = this.blocks.get(hash);
    if (block === undefined) return;
    block.refs -= 1;
    if (block.refs === 0) this.free.set(hash, true);
  }

  /** Drops cached blocks nobody holds, oldest first, until the held and cached blocks fit. */
  private evict(): void {
    for (const hash of this.free.keys()) {
      if (this.blocks.size + this.privateBlocks <= this.totalBlocks) return;
      this.free.delete(hash);
      this.blocks.delete(hash);
      this.counters.evictions += 1;
    }
  }
}

/** The cache's counters in the Prometheus text format, under vLLM's names where vLLM has one. */
export function prefixCacheMetricsText(stats: PrefixCacheStats): string {
  const lines: [string, 'counter' | 'gauge', string, number][] = [
    [
      'vllm:prefix_cache_queries_total',
      'counter',
      'Prompt tokens looked up in the prefix cache.',
      stats.queries,
    ],
    ['vllm:prefix_cache_hits_total', 'counter', 'Prompt tokens found in the prefix cache.', stats.hits],
    [
      'vllm:kv_cache_usage_perc',
      'gauge',
      'Fraction of KV cache blocks held or cached.',
      stats.totalBlocks > 0 ? stats.usedBlocks / stats.totalBlocks : 0,
    ],
    [
      'air_sim_prefill_tokens_total',
      'counter',
      'Prompt tokens computed (not found cached).',
      stats.prefillTokens,
    ],
    ['air_sim_decode_tokens_total', 'counter', 'Completion tokens decoded.', stats.decodeTokens],
    [
      'air_sim_prefix_cache_evictions_total',
      'counter',
      'KV blocks evicted from the prefix cache.',
      stats.evictions,
    ],
  ];
  return lines
    .map(([name, type, help, value]) => `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}\n`)
    .join('');
}

export type PrefixMetrics = Pick<PrefixCacheStats, 'queries' | 'hits' | 'prefillTokens' | 'decodeTokens'>;

/** Reads the counters back from a `/metrics` text (for benchmarks and tests); a missing one is an error. */
export function parsePrefixMetrics(text: string): PrefixMetrics {
  const read = (name: string): number => {
    const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    if (match === null) throw new Error(`simulator metrics: no ${name}`);
    return Number(match[1]);
  };
  return {
    queries: read('vllm:prefix_cache_queries_total'),
    hits: read('vllm:prefix_cache_hits_total'),
    prefillTokens: read('air_sim_prefill_tokens_total'),
    decodeTokens: read('air_sim_decode_tokens_total'),
  };
}
