// Copies the files tsc does not emit (prompt templates) into dist/, beside the modules that read them, and makes
// the CLI executable: tsc writes it without the bit, and `npx air` reuses an earlier install's link to it (npm
// sets the bit only when it installs), so a rebuilt dist/ would answer "air: Permission denied".
import { chmodSync, cpSync } from 'node:fs';

cpSync('operators/air/prompts', 'dist/operators/air/prompts', { recursive: true });
chmodSync('dist/cli/air.js', 0o755);
