// Copies the files tsc does not emit (prompt templates) into dist/, beside the modules that read them.
import { cpSync } from 'node:fs';

cpSync('operators/air/prompts', 'dist/operators/air/prompts', { recursive: true });
