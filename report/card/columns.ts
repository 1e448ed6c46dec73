import { AIR_DESCRIPTIONS, airFields } from '../../schemas/air.js';
import { documentBaseFields, documentsTable } from '../../schemas/documents.js';
import type { StatsKind } from '../../schemas/stats.js';
import type { ColumnType, Fields, TableSchema } from '../../schemas/types.js';

/** One column as the dataset card lists it. */
export interface CardColumn {
  readonly name: string;
  readonly type: ColumnType;
  readonly description: string;
}

const PASS_THROUGH = 'passed through from the input documents (source.metaColumns)';

/** The columns of a table schema as the run wrote it (the job knows its schema). */
export function columnsOfTable(schema: TableSchema): CardColumn[] {
  const descriptions = schema.descriptions as Readonly<Record<string, string | undefined>>;
  return Object.entries(schema.fields).map(([name, type]) => ({
    name,
    type,
    description: descriptions[name] ?? PASS_THROUGH,
  }));
}

/**
 * Columns read back from files (`air stats`): air's own columns keep the types and descriptions of schemas/
 * (DuckDB does not report nullability), any other column is described by the type DuckDB read.
 */
export function describeColumns(
  kind: StatsKind,
  columns: ReadonlyArray<{ readonly name: string; readonly type: ColumnType }>,
): CardColumn[] {
  const own: Fields = kind === 'air' ? airFields : kind === 'documents' ? documentBaseFields : {};
  const descriptions: Readonly<Record<string, string | undefined>> =
    kind === 'air' ? AIR_DESCRIPTIONS : kind === 'documents' ? documentsTable({}).descriptions : {};
  return columns.map(({ name, type }) => {
    const known = Object.hasOwn(own, name) ? own[name] : undefined;
    return {
      name,
      type: known ?? type,
      description: descriptions[name] ?? (kind === 'instructions' ? 'a column of the dataset' : PASS_THROUGH),
    };
  });
}

/** A Hugging Face `datasets` feature (the card's `dataset_info.features` entry) for a column. */
export function featureOf(name: string, type: ColumnType): Record<string, unknown> {
  return { name, ...featureType(type) };
}

function featureType(type: ColumnType): Record<string, unknown> {
  switch (type.kind) {
    case 'list':
      if (type.of.kind === 'struct') return { list: structFeatures(type.of.fields) };
      if (type.of.kind === 'list') return { sequence: featureType(type.of) };
      return { sequence: scalarDtype(type.of) };
    case 'struct':
      return { struct: structFeatures(type.fields) };
    default:
      return { dtype: scalarDtype(type) };
  }
}

function structFeatures(fields: Fields): Array<Record<string, unknown>> {
  return Object.entries(fields).map(([name, type]) => featureOf(name, type));
}

function scalarDtype(type: ColumnType): string {
  switch (type.kind) {
    case 'int32':
      return 'int32';
    case 'int64':
      return 'int64';
    case 'float64':
      return 'float64';
    case 'bool':
      return 'bool';
    case 'timestamp':
      return 'timestamp[us]';
    default:
      return 'string';
  }
}
