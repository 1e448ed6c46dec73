import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ChatMessage } from '../../llm/types.js';

/**
 * The AIR prompts live as template files in `prompts/<version>/`, one per step, each with a `## system` and a
 * `## user` section and `{{name}}` placeholders. The version written with every output row is the folder name
 * plus a hash of the files' bytes, so an edited template can never pass for the old one.
 */
export const PROMPT_SET = 'v1';

export const PROMPT_STEPS = [
  'instruction',
  'instruction-score',
  'polish',
  'student',
  'judge',
  'judge-check',
  'duplicate',
  'check',
  'merge',
  'answer',
  'score',
] as const;

export type PromptStep = (typeof PROMPT_STEPS)[number];

interface Template {
  readonly system: string;
  readonly user: string;
}

export interface PromptSet {
  /** e.g. `v1+3f2a9c0d1b7e`: the set's name and the first 12 hex digits of the SHA-256 of its files. */
  readonly version: string;
  /** Messages for one step, with every placeholder filled. */
  render(step: PromptStep, values: Readonly<Record<string, string>>): ChatMessage[];
  /** The few-shot merge example written for this many constraints (the deepest one past the last). */
  mergeExample(depth: number): string;
}

const PLACEHOLDER = /\{\{([a-z_]+)\}\}/g;

export function loadPromptSet(set: string = PROMPT_SET): PromptSet {
  const dir = fileURLToPath(new URL(`./prompts/${set}/`, import.meta.url));
  const hash = createHash('sha256');
  for (const file of readdirSync(dir).sort()) {
    hash
      .update(file)
      .update('\0')
      .update(readFileSync(`${dir}${file}`))
      .update('\0');
  }
  const templates = new Map<PromptStep, Template>();
  for (const step of PROMPT_STEPS)
    templates.set(step, parseTemplate(readFileSync(`${dir}${step}.md`, 'utf8'), step));
  const examples = parseSections(readFileSync(`${dir}merge-examples.md`, 'utf8'), /^## depth (\d+)$/m);
  const depths = [...examples.keys()].map(Number).sort((a, b) => a - b);
  return {
    version: `${set}+${hash.digest('hex').slice(0, 12)}`,
    render(step, values) {
      const template = templates.get(step)!;
      const fill = (text: string): string =>
        text.replace(PLACEHOLDER, (_, name: string) => {
          const value = values[name];
          if (value === undefined) throw new Error(`prompt "${step}" needs a value for {{${name}}}`);
          return value;
        });
      const messages: ChatMessage[] = [];
      if (template.system !== '') messages.push({ role: 'system', content: fill(template.system) });
      messages.push({ role: 'user', content: fill(template.user) });
      return messages;
    },
    mergeExample(depth) {
      const fitting = depths.filter((d) => d <= depth);
      const chosen = fitting.length > 0 ? fitting[fitting.length - 1]! : depths[0]!;
      return examples.get(String(chosen))!;
    },
  };
}

function parseTemplate(text: string, step: string): Template {
  const sections = parseSections(text, /^## (system|user)$/m);
  const user = sections.get('user');
  if (user === undefined) throw new Error(`prompt template "${step}" has no "## user" section`);
  return { system: sections.get('system') ?? '', user };
}

/** Splits text at heading lines matching `heading` (its first group names the section); bodies are trimmed. */
function parseSections(text: string, heading: RegExp): Map<string, string> {
  const sections = new Map<string, string>();
  const global = new RegExp(heading.source, 'gm');
  const marks = [...text.matchAll(global)];
  marks.forEach((mark, i) => {
    const start = mark.index + mark[0].length;
    const end = i + 1 < marks.length ? marks[i + 1]!.index : text.length;
    sections.set(mark[1]!, text.slice(start, end).trim());
  });
  return sections;
}
