import type { z } from 'zod';

/** One setting of a config schema: its dotted path and the schema of its value, unwrapped of defaults. */
export interface SettingKey {
  readonly path: string;
  readonly schema: z.ZodType;
}

/**
 * Every leaf setting of an object schema, walked through defaults, optionals and transforms. Objects nest;
 * records, arrays, unions and scalars are leaves. The config's own shape, read at run time: for checks that
 * every key is handled (the fingerprint's classification) and for help text that must not retype the schema.
 */
export function settingKeys(schema: z.ZodType, prefix = ''): SettingKey[] {
  const inner = unwrap(schema);
  const def = inner._zod.def as { type: string; shape?: Record<string, z.ZodType> };
  if (def.type !== 'object' || def.shape === undefined) return [{ path: prefix, schema: inner }];
  return Object.entries(def.shape).flatMap(([key, value]) =>
    settingKeys(value, prefix === '' ? key : `${prefix}.${key}`),
  );
}

/** The schema under `.default()`, `.prefault()`, `.optional()`, `.nullable()` and `.transform()` wrappers. */
export function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema;
  for (;;) {
    const def = current._zod.def as { type: string; innerType?: z.ZodType; in?: z.ZodType };
    if (def.innerType !== undefined) current = def.innerType;
    else if (def.type === 'pipe' && def.in !== undefined) current = def.in;
    else return current;
  }
}
