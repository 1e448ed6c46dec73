import { Ajv, type ValidateFunction } from 'ajv';
import type { JsonSchema } from './types.js';

/**
 * Structured replies: find the JSON in a model's text (models wrap it in code fences or prose even when asked
 * not to), parse it, and validate it against the request's schema. Failures say why, for the repair prompt.
 */
export type ParseResult =
  { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: string };

const ajv = new Ajv({ allErrors: true, strict: false });
const compiled = new Map<string, ValidateFunction>();

/** Extracts and parses the JSON value a reply contains. */
export function parseJsonReply(text: string): ParseResult {
  const trimmed = text.trim();
  if (trimmed.length === 0) return { ok: false, error: 'the reply is empty' };
  const candidates = [trimmed, fenced(trimmed), balanced(trimmed)].filter(
    (c): c is string => c !== undefined,
  );
  let lastError = 'no JSON value found in the reply';
  for (const candidate of candidates) {
    try {
      return { ok: true, value: JSON.parse(candidate) };
    } catch (error) {
      lastError = `not valid JSON: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  return { ok: false, error: lastError };
}

/** Parses and validates; the error lists the schema violations (path and message). */
export function parseStructured(text: string, schema: JsonSchema): ParseResult {
  const parsed = parseJsonReply(text);
  if (!parsed.ok) return parsed;
  const validate = validatorFor(schema);
  if (validate(parsed.value)) return parsed;
  const errors = (validate.errors ?? [])
    .slice(0, 5)
    .map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`)
    .join('; ');
  return { ok: false, error: `does not match the schema: ${errors}` };
}

function validatorFor(schema: JsonSchema): ValidateFunction {
  const key = JSON.stringify(schema);
  let validate = compiled.get(key);
  if (validate === undefined) {
    validate = ajv.compile(schema);
    compiled.set(key, validate);
  }
  return validate;
}

/** The body of the first ``` fence, if any. */
function fenced(text: string): string | undefined {
  const match = /```(?:json|JSON)?\s*\n?([\s\S]*?)```/.exec(text);
  return match?.[1]?.trim();
}

/** The first balanced {...} or [...] span, skipping brackets inside strings. */
function balanced(text: string): string | undefined {
  const start = text.search(/[[{]/);
  if (start < 0) return undefined;
  const stack: string[] = [];
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const ch = text[i]!;
    if (inString) {
      if (ch === '\\') i++;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') inString = true;
    else if (ch === '{') stack.push('}');
    else if (ch === '[') stack.push(']');
    else if (ch === '}' || ch === ']') {
      if (stack.pop() !== ch) return undefined;
      if (stack.length === 0) return text.slice(start, i + 1);
    }
  }
  return undefined;
}
