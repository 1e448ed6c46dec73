/**
 * A small, typed description of Parquet columns. Schemas are written once with these builders; the
 * Parquet sink turns them into physical types, and `RowOf<S>` gives the matching TypeScript row type,
 * so a schema and the code that fills it cannot drift apart.
 */
export type ColumnType =
  | { readonly kind: 'string'; readonly nullable: boolean }
  | { readonly kind: 'int32'; readonly nullable: boolean }
  | { readonly kind: 'int64'; readonly nullable: boolean }
  | { readonly kind: 'float64'; readonly nullable: boolean }
  | { readonly kind: 'bool'; readonly nullable: boolean }
  | { readonly kind: 'timestamp'; readonly nullable: boolean }
  | { readonly kind: 'list'; readonly nullable: boolean; readonly of: ColumnType }
  | { readonly kind: 'struct'; readonly nullable: boolean; readonly fields: Fields };

export type Fields = Readonly<Record<string, ColumnType>>;

export interface TableSchema<F extends Fields = Fields> {
  readonly name: string;
  readonly version: number;
  readonly fields: F;
  /** One line per column, for dataset cards and `--help`. */
  readonly descriptions: Readonly<Partial<Record<keyof F & string, string>>>;
}

type Scalar<K extends ColumnType['kind']> = { readonly kind: K; readonly nullable: false };

export const t = {
  string: (): Scalar<'string'> => ({ kind: 'string', nullable: false }),
  int32: (): Scalar<'int32'> => ({ kind: 'int32', nullable: false }),
  int64: (): Scalar<'int64'> => ({ kind: 'int64', nullable: false }),
  float64: (): Scalar<'float64'> => ({ kind: 'float64', nullable: false }),
  bool: (): Scalar<'bool'> => ({ kind: 'bool', nullable: false }),
  /** Microsecond UTC timestamps, given as Date. */
  timestamp: (): Scalar<'timestamp'> => ({ kind: 'timestamp', nullable: false }),
  list: <C extends ColumnType>(
    of: C,
  ): { readonly kind: 'list'; readonly nullable: false; readonly of: C } => ({
    kind: 'list',
    nullable: false,
    of,
  }),
  struct: <F extends Fields>(
    fields: F,
  ): { readonly kind: 'struct'; readonly nullable: false; readonly fields: F } => ({
    kind: 'struct',
    nullable: false,
    fields,
  }),
  nullable: <C extends ColumnType>(c: C): Omit<C, 'nullable'> & { readonly nullable: true } => ({
    ...c,
    nullable: true,
  }),
};

type ValueOf<C> = C extends { kind: 'string' }
  ? string
  : C extends { kind: 'int32' | 'float64' }
    ? number
    : C extends { kind: 'int64' }
      ? number | bigint
      : C extends { kind: 'bool' }
        ? boolean
        : C extends { kind: 'timestamp' }
          ? Date
          : C extends { kind: 'list'; of: infer O }
            ? Array<NullableValue<O>>
            : C extends { kind: 'struct'; fields: infer F }
              ? { [K in keyof F]: NullableValue<F[K]> }
              : never;

type NullableValue<C> = C extends { nullable: true } ? ValueOf<C> | null : ValueOf<C>;

/** The JavaScript row type a schema describes. */
export type RowOf<S extends TableSchema> = { [K in keyof S['fields']]: NullableValue<S['fields'][K]> };

export function defineTable<F extends Fields>(
  name: string,
  version: number,
  fields: F,
  descriptions: Partial<Record<keyof F & string, string>> = {},
): TableSchema<F> {
  return { name, version, fields, descriptions };
}

/** Human-readable type, e.g. `list<struct<type: string, iteration: int32>>`. */
export function describeType(c: ColumnType): string {
  const base =
    c.kind === 'list'
      ? `list<${describeType(c.of)}>`
      : c.kind === 'struct'
        ? `struct<${Object.entries(c.fields)
            .map(([k, v]) => `${k}: ${describeType(v)}`)
            .join(', ')}>`
        : c.kind;
  return c.nullable ? `${base}?` : base;
}
