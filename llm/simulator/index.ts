/** The OpenAI-compatible LLM simulator used by tests, benchmarks and `air sim`. */
export { startSimulator, serverOptionsSchema } from './server.js';
export type { Simulator, SimulatorOptions, SimulatorStats } from './server.js';
export { Capacity, resolveCapacity, serviceTimeMs, throughputCeiling } from './capacity.js';
export type {
  CapacityConfig,
  CapacityOptions,
  CapacityStats,
  ServeOutcome,
  ThroughputCeiling,
} from './capacity.js';
export { metricsText, parseMetrics } from './metrics.js';
export type { MetricName, MetricsSource } from './metrics.js';
export { describeFaults, FAULT_KINDS, FaultInjector, Outage, resolveFaults } from './faults.js';
export type { DownMode, FaultConfig, FaultKind, FaultOptions } from './faults.js';
export {
  CHARS_PER_TOKEN,
  countPromptTokens,
  countTokens,
  cutToTokens,
  generateReply,
  hash32,
  resolveReplies,
  replyTokens,
  Rng,
  UnsupportedSchemaError,
} from './replies.js';
export { chatTokens, tokenize } from './tokens.js';
export {
  blockHashes,
  parsePrefixMetrics,
  PrefixCache,
  prefixCacheMetricsText,
  resolvePrefixCache,
} from './prefix-cache.js';
export type {
  PrefixCacheConfig,
  PrefixCacheOptions,
  PrefixCacheStats,
  PrefixMetrics,
} from './prefix-cache.js';
export type { Reply, ReplyConfig, ReplyOptions, ReplyRequest, SimMessage } from './replies.js';
