import type { SchemaElement } from 'hyparquet-writer';
import type { ColumnType, TableSchema } from '../../schemas/types.js';

/**
 * Translates air's column schema into the flat Parquet schema (depth-first SchemaElement list) that
 * hyparquet-writer takes. Lists use the standard three-level layout (`<name>` LIST / `list` REPEATED /
 * `element`), which DuckDB, pyarrow and Spark read as LIST.
 */
export function parquetSchemaOf(schema: TableSchema): SchemaElement[] {
  const fields = Object.entries(schema.fields);
  const out: SchemaElement[] = [{ name: 'schema', num_children: fields.length }];
  for (const [name, type] of fields) out.push(...elementsOf(name, type));
  return out;
}

function elementsOf(name: string, type: ColumnType): SchemaElement[] {
  const repetition_type = type.nullable ? 'OPTIONAL' : 'REQUIRED';
  switch (type.kind) {
    case 'string':
      return [
        {
          name,
          repetition_type,
          type: 'BYTE_ARRAY',
          converted_type: 'UTF8',
          logical_type: { type: 'STRING' },
        },
      ];
    case 'int32':
      return [{ name, repetition_type, type: 'INT32' }];
    case 'int64':
      return [{ name, repetition_type, type: 'INT64' }];
    case 'float64':
      return [{ name, repetition_type, type: 'DOUBLE' }];
    case 'bool':
      return [{ name, repetition_type, type: 'BOOLEAN' }];
    case 'timestamp':
      return [
        {
          name,
          repetition_type,
          type: 'INT64',
          converted_type: 'TIMESTAMP_MICROS',
          logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: true, unit: 'MICROS' },
        },
      ];
    case 'list':
      return [
        { name, repetition_type, converted_type: 'LIST', logical_type: { type: 'LIST' }, num_children: 1 },
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
        ...elementsOf('element', type.of),
      ];
    case 'struct': {
      const children = Object.entries(type.fields);
      return [
        { name, repetition_type, num_children: children.length },
        ...children.flatMap(([child, childType]) => elementsOf(child, childType)),
      ];
    }
  }
}
