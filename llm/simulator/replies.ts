import { z } from 'zod';
import { ConfigError } from '../../pipeline/errors.js';
import type { ChatCompletionRequest, JsonSchema } from '../types.js';
import { fmix32, fnv1a32 } from '../../pipeline/hash.js';
import { Rng } from '../../pipeline/random.js';
import { countChatTokens } from './tokens.js';

export { Rng };

/**
 * Deterministic replies of the simulator. Every reply comes from a PRNG keyed by a hash of
 * (simulator seed, model, messages, temperature, top_p, request seed, response_format): the same request to a
 * simulator with the same seed gets the same reply, byte for byte. `max_tokens` is left out of the key on
 * purpose, so a capped reply is a prefix of the uncapped one, as with a real model at temperature 0.
 */

// ---- random numbers -------------------------------------------------------------------------------------

/** 32-bit FNV-1a over UTF-16 code units, then a murmur3-style finaliser so similar keys spread over all bits. */
export function hash32(text: string): number {
  return fmix32(fnv1a32(text));
}

// ---- tokens ---------------------------------------------------------------------------------------------

/**
 * Prompts are counted by `tokens.ts` (close to a real tokenizer's counts, chat template included). A reply is
 * written to a drawn length in tokens, 4 UTF-16 code units a token, and its completion tokens are counted back
 * that way (`replyTokens`), so a length drawn is a length served and `max_tokens` cuts exactly.
 */
export const CHARS_PER_TOKEN = 4;

export { countTokens } from './tokens.js';

export function countPromptTokens(messages: readonly SimMessage[]): number {
  return countChatTokens(messages);
}

/** A reply's completion tokens: its length in units of `CHARS_PER_TOKEN`, rounded up. */
export function replyTokens(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

/** The longest prefix of a reply that counts as at most `tokens` tokens. */
export function cutToTokens(text: string, tokens: number): string {
  return text.slice(0, Math.max(0, tokens) * CHARS_PER_TOKEN);
}

// ---- options --------------------------------------------------------------------------------------------

export const replyOptionsSchema = z.object({
  /** Seeds every reply, embedding and fault draw of the simulator. */
  seed: z.number().int().default(0),
  /** Mean length of a text reply before max_tokens cuts it. */
  meanReplyTokens: z.number().positive().default(200),
  /**
   * Added to that mean per prompt token: a model rewriting a document answers at a length that follows the
   * document's (AIR's polish step), where a short question gets `meanReplyTokens`. 0: every prompt alike.
   */
  replyTokensPerPromptToken: z.number().nonnegative().default(0),
  /**
   * Distribution of text reply lengths, all with mean `meanReplyTokens`: `lognormal` (shape `replyLengthSigma`;
   * σ = 1 gives median ≈ 0.61 × mean and p99 ≈ 6 × mean, close to chat-model replies), `pareto` (tail index
   * `replyLengthAlpha`, heavier tail for smaller α) or `fixed` (every reply exactly the mean, for timing tests).
   */
  replyLength: z.enum(['lognormal', 'pareto', 'fixed']).default('lognormal'),
  replyLengthSigma: z.number().positive().default(1),
  replyLengthAlpha: z.number().gt(1).default(2.5),
  /**
   * What seeds a reply and supplies its words. `prompt`: the whole request, messages verbatim. `content`: the
   * prompt's per-request text only, so that two prompt layouts carrying the same texts (air's prompt sets v1
   * and v2) get the same replies and take the same decisions: see `replyBasis`.
   */
  replyKey: z.enum(['prompt', 'content']).default('prompt'),
});

export type ReplyOptions = z.input<typeof replyOptionsSchema>;
export type ReplyConfig = z.output<typeof replyOptionsSchema>;

export function resolveReplies(options: ReplyOptions = {}): ReplyConfig {
  const parsed = replyOptionsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(
      `simulator replies: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

/** A reply length in tokens (at least 1) drawn from the configured distribution. */
export function sampleReplyTokens(rng: Rng, config: ReplyConfig, promptTokens = 0): number {
  const mean = config.meanReplyTokens + config.replyTokensPerPromptToken * promptTokens;
  let x: number;
  switch (config.replyLength) {
    case 'fixed':
      x = mean;
      break;
    case 'lognormal': {
      const sigma = config.replyLengthSigma;
      // E[exp(N(mu, sigma²))] = exp(mu + sigma²/2), so this mu gives the requested mean.
      x = Math.exp(Math.log(mean) - (sigma * sigma) / 2 + sigma * rng.normal());
      break;
    }
    case 'pareto': {
      const alpha = config.replyLengthAlpha;
      // Pareto(xm, alpha) has mean alpha·xm/(alpha-1); invert for xm, then sample by inverse CDF.
      const xm = (mean * (alpha - 1)) / alpha;
      x = xm / Math.pow(1 - rng.next(), 1 / alpha);
      break;
    }
  }
  return Math.max(1, Math.round(x));
}

// ---- chat replies ---------------------------------------------------------------------------------------

export interface SimMessage {
  readonly role: string;
  readonly content: string;
}

export interface ReplyRequest {
  readonly model: string;
  readonly messages: readonly SimMessage[];
  readonly temperature?: number;
  readonly top_p?: number;
  readonly seed?: number;
  readonly responseFormat?: ChatCompletionRequest['response_format'];
  /** The most completion tokens allowed: max_tokens, or what the context leaves. */
  readonly maxTokens: number;
  /** The prompt's length in tokens, for `replyTokensPerPromptToken` (0 when unset). */
  readonly promptTokens?: number;
}

export interface Reply {
  readonly text: string;
  readonly finishReason: 'stop' | 'length';
  readonly completionTokens: number;
}

/** A schema the simulator cannot instantiate; the server answers 400 naming the problem. */
export class UnsupportedSchemaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedSchemaError';
  }
}

/** A fenced block of air's prompts: a `<<<` line, the per-request text, a `>>>` line. */
const FENCED = /^<<<\n([\s\S]*?)\n>>>$/gm;

/**
 * The messages a reply is drawn from. With `replyKey: content`, a prompt whose first system and user messages
 * fence their per-request texts (air's prompts fence the document, instruction, reference, answer and
 * constraint) is reduced to those texts, sorted, so neither the static wording around them nor their order
 * matters; messages after the first user message (a JSON repair's exchange) follow verbatim. What the fences
 * leave out is still in the key through the request: its seed (air derives it from the document, step and
 * round) and its response_format (the judge's enum of remaining types). A prompt without fences (a student's
 * instruction) is kept whole: its layout is its content.
 */
export function replyBasis(config: ReplyConfig, messages: readonly SimMessage[]): readonly SimMessage[] {
  if (config.replyKey === 'prompt') return messages;
  const firstUser = messages.findIndex((m) => m.role === 'user');
  const head = firstUser < 0 ? messages : messages.slice(0, firstUser + 1);
  const blocks = head.flatMap((m) => [...m.content.matchAll(FENCED)].map((match) => match[1]!));
  if (blocks.length === 0) return messages;
  return [{ role: 'user', content: blocks.sort().join('\n\n') }, ...messages.slice(head.length)];
}

export function replyRng(
  config: ReplyConfig,
  request: ReplyRequest,
  basis = replyBasis(config, request.messages),
): Rng {
  const key = JSON.stringify([
    config.seed,
    request.model,
    basis.map((m) => [m.role, m.content]),
    request.temperature ?? null,
    request.top_p ?? null,
    request.seed ?? null,
    request.responseFormat ?? null,
  ]);
  return new Rng(hash32(key));
}

/** Throws UnsupportedSchemaError for a json_schema the simulator cannot satisfy. */
export function generateReply(request: ReplyRequest, config: ReplyConfig): Reply {
  const basis = replyBasis(config, request.messages);
  const rng = replyRng(config, request, basis);
  const words = vocabulary(basis);
  const format = request.responseFormat;
  if (format?.type === 'json_schema') {
    const schema = format.json_schema.schema;
    checkSchema(schema, schema, '#');
    return capped(
      JSON.stringify(new InstanceGenerator(schema, rng, words).generate(schema, 0)),
      request.maxTokens,
    );
  }
  if (format?.type === 'json_object') {
    const reply = {
      reply: sentence(rng, words),
      keywords: [rng.pick(words), rng.pick(words), rng.pick(words)],
    };
    return capped(JSON.stringify(reply), request.maxTokens);
  }
  // A reply's length follows the text it was drawn from, so the layout's static text does not lengthen it.
  const promptTokens =
    basis === request.messages || request.promptTokens === undefined
      ? request.promptTokens
      : countChatTokens(basis);
  const tokens = sampleReplyTokens(rng, config, promptTokens);
  if (tokens > request.maxTokens) {
    const text = prose(rng, words, request.maxTokens * CHARS_PER_TOKEN);
    return { text, finishReason: 'length', completionTokens: replyTokens(text) };
  }
  // End on a full stop; the text is still exactly `tokens` tokens long.
  const text = `${prose(rng, words, tokens * CHARS_PER_TOKEN - 1)}.`;
  return { text, finishReason: 'stop', completionTokens: replyTokens(text) };
}

/** The reply cut to half its tokens (at least one), as a server that stops early would send it. */
export function truncateReply(reply: Reply): Reply {
  const text = cutToTokens(reply.text, Math.max(1, Math.floor(reply.completionTokens / 2)));
  return { text, finishReason: 'length', completionTokens: replyTokens(text) };
}

function capped(text: string, maxTokens: number): Reply {
  if (replyTokens(text) <= maxTokens)
    return { text, finishReason: 'stop', completionTokens: replyTokens(text) };
  const cut = cutToTokens(text, maxTokens);
  return { text: cut, finishReason: 'length', completionTokens: replyTokens(cut) };
}

const WORD = /[\p{L}\p{N}]+(?:['’-][\p{L}\p{N}]+)*/gu;
const MAX_VOCABULARY = 4096;
/** Used only when the prompt has no words at all (e.g. only punctuation). */
const FALLBACK_WORDS = ['reply', 'simulated', 'model', 'text', 'answer', 'token'];

/** The prompt's distinct words, lower-cased, in order of first use: replies are made of them. */
function vocabulary(messages: readonly SimMessage[]): readonly string[] {
  const words = new Set<string>();
  for (const message of messages) {
    for (const match of message.content.matchAll(WORD)) {
      words.add(match[0].toLowerCase());
      if (words.size >= MAX_VOCABULARY) return [...words];
    }
  }
  return words.size > 0 ? [...words] : FALLBACK_WORDS;
}

function sentence(rng: Rng, words: readonly string[]): string {
  const count = rng.int(6, 18);
  const parts: string[] = [];
  for (let i = 0; i < count; i += 1) parts.push(rng.pick(words));
  const text = parts.join(' ');
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
}

/** Sentences of prompt words, exactly `chars` long (cut mid-sentence if need be). */
function prose(rng: Rng, words: readonly string[], chars: number): string {
  const sentences: string[] = [];
  let length = -1; // joined length: one space between sentences
  while (length < chars) {
    const next = sentence(rng, words);
    sentences.push(next);
    length += next.length + 1;
  }
  return sentences.join(' ').slice(0, chars);
}

// ---- embeddings -----------------------------------------------------------------------------------------

/** A deterministic unit vector (Gaussian direction, so unrelated inputs are nearly orthogonal). */
export function embedding(config: ReplyConfig, model: string, input: string, dimensions: number): number[] {
  const rng = new Rng(hash32(JSON.stringify([config.seed, 'embedding', model, dimensions, input])));
  const vector: number[] = [];
  let norm = 0;
  for (let i = 0; i < dimensions; i += 1) {
    const x = rng.normal();
    vector.push(x);
    norm += x * x;
  }
  norm = Math.sqrt(norm);
  return vector.map((x) => x / norm);
}

// ---- JSON Schema instances ------------------------------------------------------------------------------

/*
 * Instances honour this subset: type (one or a list), properties, required, additionalProperties, items,
 * enum, const, minLength/maxLength, minimum/maximum, exclusiveMinimum/exclusiveMaximum, minItems/maxItems,
 * anyOf/oneOf, and local $ref into $defs/definitions. Other keywords (pattern, format, multipleOf, uniqueItems,
 * allOf, prefixItems, ...) are ignored, so an instance may break them, as a model without constrained decoding
 * would: that is how tests reach a client's repair path. A malformed or unsatisfiable use of the subset is a
 * 400, as a real server rejects it.
 */
const TYPES = new Set(['object', 'array', 'string', 'number', 'integer', 'boolean', 'null']);
/** Below this depth optional properties and extra array items are left out, so recursive schemas end. */
const SHALLOW_DEPTH = 6;
const MAX_DEPTH = 40;

type SchemaObject = Readonly<Record<string, unknown>>;

function isObject(value: unknown): value is SchemaObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

/** Walks the whole schema once, so a bad keyword is reported whichever branch the PRNG would pick. */
function checkSchema(schema: unknown, root: JsonSchema, path: string): void {
  if (schema === true) return;
  if (!isObject(schema)) throw new UnsupportedSchemaError(`${path}: a schema must be an object or true`);
  const fail = (message: string): never => {
    throw new UnsupportedSchemaError(`${path}: ${message}`);
  };
  const { type } = schema;
  if (type !== undefined) {
    const types = Array.isArray(type) ? type : [type];
    if (types.length === 0 || !types.every((t) => typeof t === 'string' && TYPES.has(t))) {
      fail(`"type" must be one of ${[...TYPES].join(', ')} or a non-empty list of them`);
    }
  }
  for (const key of ['minLength', 'maxLength', 'minItems', 'maxItems']) {
    if (schema[key] !== undefined && !isCount(schema[key])) fail(`"${key}" must be a non-negative integer`);
  }
  for (const key of ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum']) {
    const value = schema[key];
    if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value))) {
      fail(`"${key}" must be a number`);
    }
  }
  if (
    ((schema.minLength as number | undefined) ?? 0) > ((schema.maxLength as number | undefined) ?? Infinity)
  ) {
    fail('"minLength" is greater than "maxLength"');
  }
  if (
    ((schema.minItems as number | undefined) ?? 0) > ((schema.maxItems as number | undefined) ?? Infinity)
  ) {
    fail('"minItems" is greater than "maxItems"');
  }
  if (schema.enum !== undefined && !(Array.isArray(schema.enum) && schema.enum.length > 0)) {
    fail('"enum" must be a non-empty list');
  }
  if (schema.required !== undefined) {
    if (!(Array.isArray(schema.required) && schema.required.every((r) => typeof r === 'string'))) {
      fail('"required" must be a list of property names');
    }
  }
  for (const key of ['properties', '$defs', 'definitions']) {
    const map = schema[key];
    if (map === undefined) continue;
    if (!isObject(map)) fail(`"${key}" must be an object of schemas`);
    for (const [name, sub] of Object.entries(map as SchemaObject))
      checkSchema(sub, root, `${path}/${key}/${name}`);
  }
  const extra = schema.additionalProperties;
  if (extra !== undefined && typeof extra !== 'boolean')
    checkSchema(extra, root, `${path}/additionalProperties`);
  if (isObject(schema.items)) checkSchema(schema.items, root, `${path}/items`);
  for (const key of ['anyOf', 'oneOf']) {
    const branches = schema[key];
    if (branches === undefined) continue;
    if (!(Array.isArray(branches) && branches.length > 0))
      fail(`"${key}" must be a non-empty list of schemas`);
    (branches as unknown[]).forEach((sub, i) => checkSchema(sub, root, `${path}/${key}/${i}`));
  }
  if (schema.$ref !== undefined) {
    if (typeof schema.$ref !== 'string') fail('"$ref" must be a string');
    resolveRef(root, schema.$ref as string);
  }
}

/** Local references only: "#", "#/$defs/<name>" and "#/definitions/<name>". */
function resolveRef(root: JsonSchema, ref: string): unknown {
  if (ref === '#') return root;
  const match = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref);
  const defs = match === null ? undefined : root[match[1] as string];
  const name = match?.[2]?.replace(/~1/g, '/').replace(/~0/g, '~');
  if (!isObject(defs) || name === undefined || !Object.hasOwn(defs, name)) {
    throw new UnsupportedSchemaError(
      `$ref "${ref}": only local #/$defs/<name> and #/definitions/<name> are supported`,
    );
  }
  return defs[name];
}

/** `outer` with `inner`'s keywords on top; properties are merged and required lists joined. */
function mergeSchemas(outer: SchemaObject, inner: unknown): SchemaObject {
  if (!isObject(inner)) return outer;
  const merged: Record<string, unknown> = { ...outer, ...inner };
  if (isObject(outer.properties) && isObject(inner.properties)) {
    merged.properties = { ...outer.properties, ...inner.properties };
  }
  if (Array.isArray(outer.required) && Array.isArray(inner.required)) {
    merged.required = [...new Set([...(outer.required as unknown[]), ...(inner.required as unknown[])])];
  }
  return merged;
}

class InstanceGenerator {
  constructor(
    private readonly root: JsonSchema,
    private readonly rng: Rng,
    private readonly words: readonly string[],
  ) {}

  generate(input: unknown, depth: number): unknown {
    if (depth > MAX_DEPTH) throw new UnsupportedSchemaError('schema recursion too deep to build an instance');
    if (!isObject(input)) return this.phrase(); // `true` or `{}`: anything goes
    let schema = input;
    if (typeof schema.$ref === 'string') {
      const { $ref, ...rest } = schema;
      schema = mergeSchemas(rest, resolveRef(this.root, $ref as string));
      return this.generate(schema, depth + 1);
    }
    const branches = schema.anyOf ?? schema.oneOf;
    if (Array.isArray(branches)) {
      // oneOf is treated as anyOf: with the disjoint branches schemas normally use, one pick matches exactly one.
      const { anyOf: _anyOf, oneOf: _oneOf, ...rest } = schema;
      return this.generate(mergeSchemas(rest, this.rng.pick(branches)), depth + 1);
    }
    if (schema.const !== undefined) return structuredClone(schema.const);
    if (Array.isArray(schema.enum)) return structuredClone(this.rng.pick(schema.enum));
    switch (this.rng.pick(typesOf(schema))) {
      case 'object':
        return this.object(schema, depth);
      case 'array':
        return this.array(schema, depth);
      case 'integer':
        return this.number(schema, true);
      case 'number':
        return this.number(schema, false);
      case 'boolean':
        return this.rng.next() < 0.5;
      case 'null':
        return null;
      default:
        return this.string(schema);
    }
  }

  private object(schema: SchemaObject, depth: number): Record<string, unknown> {
    const properties = isObject(schema.properties) ? schema.properties : {};
    const required = new Set(Array.isArray(schema.required) ? (schema.required as string[]) : []);
    const entries: [string, unknown][] = [];
    for (const [name, sub] of Object.entries(properties)) {
      const include = required.has(name) || (depth < SHALLOW_DEPTH && this.rng.next() < 0.5);
      if (include) entries.push([name, this.generate(sub, depth + 1)]);
    }
    for (const name of required) {
      if (Object.hasOwn(properties, name)) continue;
      const extra = schema.additionalProperties;
      if (extra === false) {
        throw new UnsupportedSchemaError(
          `required property "${name}" is not in "properties" and additionalProperties is false`,
        );
      }
      entries.push([name, this.generate(extra === undefined ? true : extra, depth + 1)]);
    }
    // fromEntries defines own properties, so a key such as "__proto__" stays a plain key.
    return Object.fromEntries(entries);
  }

  private array(schema: SchemaObject, depth: number): unknown[] {
    const min = (schema.minItems as number | undefined) ?? 0;
    const max = Math.min((schema.maxItems as number | undefined) ?? Infinity, min + 4);
    const count = depth < SHALLOW_DEPTH ? this.rng.int(min, max) : min;
    const items: unknown[] = [];
    for (let i = 0; i < count; i += 1) items.push(this.generate(schema.items ?? true, depth + 1));
    return items;
  }

  private number(schema: SchemaObject, integer: boolean): number {
    let lo = -Infinity;
    let hi = Infinity;
    let loExclusive = false;
    let hiExclusive = false;
    if (typeof schema.minimum === 'number') lo = schema.minimum;
    if (typeof schema.exclusiveMinimum === 'number' && schema.exclusiveMinimum >= lo) {
      lo = schema.exclusiveMinimum;
      loExclusive = true;
    }
    if (typeof schema.maximum === 'number') hi = schema.maximum;
    if (typeof schema.exclusiveMaximum === 'number' && schema.exclusiveMaximum <= hi) {
      hi = schema.exclusiveMaximum;
      hiExclusive = true;
    }
    // Unbounded sides get a window of 1000 so values stay readable.
    if (lo === -Infinity && hi === Infinity) lo = 0;
    if (lo === -Infinity) lo = hi - 1000;
    if (hi === Infinity) hi = lo + 1000;
    if (integer) {
      const first = loExclusive ? Math.floor(lo) + 1 : Math.ceil(lo);
      const last = hiExclusive ? Math.ceil(hi) - 1 : Math.floor(hi);
      if (first > last) throw new UnsupportedSchemaError(`no integer lies within [${lo}, ${hi}]`);
      return this.rng.int(first, last);
    }
    const inside = (v: number): boolean =>
      (loExclusive ? v > lo : v >= lo) && (hiExclusive ? v < hi : v <= hi);
    const value = Math.round((lo + this.rng.next() * (hi - lo)) * 100) / 100;
    if (inside(value)) return value;
    const middle = (lo + hi) / 2;
    if (inside(middle)) return middle;
    throw new UnsupportedSchemaError(`no number lies within the bounds ${lo}..${hi}`);
  }

  private string(schema: SchemaObject): string {
    const min = (schema.minLength as number | undefined) ?? 0;
    const max = (schema.maxLength as number | undefined) ?? Infinity;
    // Lengths are in code points, as JSON Schema counts them.
    let chars = Array.from(this.phrase());
    while (chars.length < min) chars = chars.concat(' ', Array.from(this.rng.pick(this.words)));
    if (chars.length > max) chars = chars.slice(0, max);
    return chars.join('');
  }

  private phrase(): string {
    const count = this.rng.int(1, 8);
    const parts: string[] = [];
    for (let i = 0; i < count; i += 1) parts.push(this.rng.pick(this.words));
    return parts.join(' ');
  }
}

function typesOf(schema: SchemaObject): readonly string[] {
  const { type } = schema;
  if (typeof type === 'string') return [type];
  if (Array.isArray(type)) return type as string[];
  if (
    schema.properties !== undefined ||
    schema.required !== undefined ||
    schema.additionalProperties !== undefined
  ) {
    return ['object'];
  }
  if (schema.items !== undefined || schema.minItems !== undefined || schema.maxItems !== undefined)
    return ['array'];
  const numeric = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'];
  if (numeric.some((key) => schema[key] !== undefined)) return ['number'];
  return ['string'];
}
