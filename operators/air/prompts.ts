import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChatMessage } from '../../llm/types.js';

/**
 * The AIR prompts live as template files in `prompts/<version>/`, one per step, each with a `## system` and a
 * `## user` section and `{{name}}` placeholders. Each step has a version of its own, made of its own files'
 * bytes only, so an edited template can never pass for the old one and adding a step changes no other step's
 * version. A run's prompt version (written with every row) is a digest of the versions of the steps it uses.
 */
export const PROMPT_SET = 'v2';

/** A step's name: its template file's name without `.md`. Steps are found in the set's folder, not listed. */
export type PromptStep = string;

interface Template {
  readonly system: string;
  readonly user: string;
}

export interface PromptSet {
  /** Per step, e.g. `v1/judge-check@3f2a9c0d1b7e`: the set, the step and 12 hex digits of its files' SHA-256. */
  readonly stepVersions: Readonly<Record<PromptStep, string>>;
  /** Whether the set has a template for `step`. */
  has(step: PromptStep): boolean;
  /** `versionOf` every step of the set. */
  readonly version: string;
  /** e.g. `v1+5d0e6b7a2c94`: the set's name and 12 hex digits of the SHA-256 of these steps' versions. */
  versionOf(steps: Iterable<PromptStep>): string;
  /** Messages for one step, with every placeholder filled. */
  render(step: PromptStep, values: Readonly<Record<string, string>>): ChatMessage[];
  /** The few-shot merge example written for this many constraints (the deepest one past the last). */
  mergeExample(depth: number): string;
}

const PLACEHOLDER = /\{\{([a-z_]+)\}\}/g;

/** The files a step's prompt is made of: its template, and for merge the few-shot examples. */
function filesOf(step: PromptStep): string[] {
  return step === 'merge' ? ['merge.md', 'merge-examples.md'] : [`${step}.md`];
}

/** `folder` defaults to the bundled `prompts/<set>/`. */
export function loadPromptSet(
  set: string = PROMPT_SET,
  folder = fileURLToPath(new URL(`./prompts/${set}/`, import.meta.url)),
): PromptSet {
  // Every file of the set read once: the step test, the templates and the hashes all use these bytes.
  const files = new Map(
    readdirSync(folder)
      .filter((file) => file.endsWith('.md'))
      .map((file) => [file, readFileSync(path.join(folder, file))] as const),
  );
  const read = (file: string): Buffer => {
    const bytes = files.get(file);
    if (bytes === undefined) throw new Error(`the prompt set ${set} has no file ${file}`);
    return bytes;
  };
  const templates = new Map<PromptStep, Template>();
  const stepVersions: Record<PromptStep, string> = {};
  for (const step of templateSteps(files)) {
    templates.set(step, parseTemplate(read(`${step}.md`).toString('utf8'), step));
    const hash = createHash('sha256');
    for (const file of filesOf(step)) hash.update(file).update('\0').update(read(file)).update('\0');
    stepVersions[step] = `${set}/${step}@${hash.digest('hex').slice(0, 12)}`;
  }
  const examples = parseSections(read('merge-examples.md').toString('utf8'), /^## depth (\d+)$/m);
  const depths = [...examples.keys()].map(Number).sort((a, b) => a - b);
  const versionOf = (steps: Iterable<PromptStep>): string => {
    const versions = [...new Set(steps)].map((step) => stepVersions[step]).sort();
    return `${set}+${createHash('sha256').update(versions.join('\n')).digest('hex').slice(0, 12)}`;
  };
  return {
    stepVersions,
    version: versionOf(templates.keys()),
    has: (step) => templates.has(step),
    versionOf,
    render(step, values) {
      const template = templates.get(step);
      if (template === undefined)
        throw new Error(`the prompt set ${set} has no template for the step "${step}"`);
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

/** The steps among a set's files: every `.md` file with a `## user` section (merge-examples.md is merge's). */
function templateSteps(files: ReadonlyMap<string, Buffer>): PromptStep[] {
  return [...files]
    .filter(([, bytes]) => /^## user$/m.test(bytes.toString('utf8')))
    .map(([file]) => file.slice(0, -'.md'.length))
    .sort();
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
