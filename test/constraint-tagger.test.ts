import { describe, expect, it } from 'vitest';
import {
  CONSTRAINT_TYPES,
  summarizeConstraints,
  tagConstraints,
  type ConstraintTag,
  type ConstraintType,
} from '../operators/constraint-tagger.js';

const typesOf = (instruction: string): ConstraintType[] =>
  [...new Set(tagConstraints(instruction).map((tag) => tag.type))].sort();

const tagOf = (instruction: string, type: ConstraintType): ConstraintTag => {
  const tag = tagConstraints(instruction).find((t) => t.type === type);
  if (tag === undefined) throw new Error(`no ${type} tag in: ${instruction}`);
  return tag;
};

/** Hand-labelled instructions: the exact set of types each one states. */
const CASES: ReadonlyArray<readonly [string, readonly ConstraintType[]]> = [
  // data format
  ['List the planets of the solar system in JSON.', ['data_format']],
  ['Compare Python and Java in a markdown table.', ['data_format']],
  ['Return a JSON object with the keys name and age for three fictional people.', ['data_format']],
  ['Create a table comparing the three largest oceans, with columns for area and depth.', ['data_format']],
  // document structure
  ['Write about the benefits of cycling in exactly four paragraphs.', ['document_structure']],
  ['Give tips for saving money as a numbered list.', ['document_structure']],
  ['Explain how vaccines work, organized under clear headings.', ['document_structure']],
  // domain-specific format
  ['Write a haiku about autumn rain.', ['domain_format']],
  ['Draft a recipe card for banana bread.', ['domain_format']],
  ['Summarize the study in APA style.', ['domain_format']],
  // inclusion
  ['Describe the water cycle and mention evaporation, condensation and precipitation.', ['inclusion']],
  ['Write a short history of Rome; be sure to include the fall of the Western Empire.', ['inclusion']],
  // exclusion
  ['Explain how a car engine works. Do not mention electric vehicles.', ['exclusion']],
  ['Describe the city of Paris, avoiding clichés about romance.', ['exclusion']],
  ['Explain inflation without any technical jargon.', ['exclusion']],
  // citation
  ['Explain the causes of the 2008 financial crisis and cite at least two sources.', ['citation']],
  ['Summarize the poem, quoting directly from the text.', ['citation']],
  // prior condition
  ['Assume that the reader has never used a computer, then explain what a browser is.', ['prior_condition']],
  ['If the user asks about pricing, say that it depends on the plan.', ['prior_condition']],
  ['Given that the budget is limited, suggest three ways to market a bakery.', ['prior_condition']],
  // target audience
  ['Explain how neural networks learn for complete beginners.', ['target_audience']],
  ['Describe the benefits of cloud migration for a CTO.', ['target_audience']],
  ['Write a story about friendship for kids.', ['target_audience']],
  ['Explain quantum computing to a five-year-old.', ['target_audience']],
  // tone and style
  ['Write a persuasive essay on why cities need more parks.', ['tone_style']],
  ['Describe your morning routine in a humorous tone.', ['tone_style']],
  ['Explain the rules of chess. Keep it casual.', ['tone_style']],
  // tone and style without a tone adjective: imitation, qualities, roles (issue 11)
  ['Explain the history of jazz in the whimsical style of Dr. Seuss.', ['tone_style']],
  ['Describe the ocean with a touch of humor.', ['tone_style']],
  ['Explain tides, infusing your answer with the wit of Oscar Wilde.', ['tone_style']],
  ['Describe a sunrise in prose reminiscent of Hemingway.', ['tone_style']],
  ['Channel your inner Shakespeare and describe a rainy day.', ['tone_style']],
  ['Act as a travel agent and suggest three destinations.', ['tone_style']],
  ['Respond as if you were Abraham Lincoln.', ['tone_style']],
  ['Picture yourself as a chef and describe your kitchen.', ['tone_style']],
  ['You are a customer support agent. Answer the question below.', ['tone_style']],
  // emotion
  ['Write an empathetic reply to a customer whose order arrived damaged.', ['emotion']],
  ['Announce the product launch to the team with genuine enthusiasm.', ['emotion']],
  // linguistic characteristics
  ['Describe a sunset using only the active voice.', ['linguistic']],
  ['Write a poem about the sea that rhymes.', ['linguistic']],
  ['Summarize the article in no more than 50 words.', ['linguistic']],
  ['Write a product review of at least 200 words.', ['linguistic']],
  ['Summarize the French Revolution in three sentences.', ['linguistic']],
  // multilingual
  ['Explain photosynthesis in French.', ['multilingual']],
  ['Translate the following proverb into German and explain its meaning.', ['multilingual']],
  ['Give a bilingual glossary of ten cooking terms.', ['multilingual']],
  // several constraints at once
  [
    'Write a formal email to a client, under 150 words, in Spanish, without mentioning prices, with three bullet points',
    ['document_structure', 'domain_format', 'exclusion', 'linguistic', 'multilingual', 'tone_style'],
  ],
  [
    'For a general audience, write a cheerful newsletter in English and Spanish, including a section on upcoming events, and cite the city council report.',
    ['citation', 'domain_format', 'emotion', 'inclusion', 'multilingual', 'target_audience'],
  ],
  [
    'Assuming the reader is a nurse, write a reassuring 300-word explanation of sepsis in plain English, with two examples and no jargon.',
    ['emotion', 'exclusion', 'inclusion', 'linguistic', 'prior_condition', 'target_audience'],
  ],
  [
    'Write a short, funny limerick about a cat, in exactly five lines.',
    ['domain_format', 'linguistic', 'tone_style'],
  ],
  [
    'Before answering, list your assumptions; then describe the plan as a step-by-step guide for beginners in the first person.',
    ['document_structure', 'linguistic', 'prior_condition', 'target_audience'],
  ],
  // negatives: each type's trigger words used as the topic, or negated
  ['Set the table for dinner and describe the centerpiece.', []],
  ['Describe the table of the kitchen.', []],
  ['Explain what JSON is and how it differs from YAML.', []],
  ['Explain how dates are stored in JSON.', []],
  ['Explain the two sections of the Constitution.', []],
  ['Explain how email spam filters work.', []],
  ['Write a story about a letter that never arrived.', []],
  ['Explain how to cover a wound.', []],
  ['Give tips to avoid burnout at work.', []],
  ['Describe the main sources of renewable energy.', []],
  ['Give me a quote for painting the living room.', []],
  ['Explain why people assume the worst.', []],
  ['Suggest birthday gift ideas for children.', []],
  ['Describe the symptoms of a serious illness.', []],
  ['Describe the traits of professional athletes.', []],
  ['Explain how warm water affects yeast.', []],
  ['Explain what a rhyme is.', []],
  ['Describe the role of cheese in French cuisine.', []],
  ['Explain why translation is difficult for machines.', []],
  // the words of the style and persona rules used as the topic
  ['Explain why gold can act as an insurance policy against inflation.', []],
  ['Explain how the heart acts as a pump.', []],
  ['Describe a building reminiscent of ancient Rome.', []],
  ['Describe the role of humor in politics.', []],
  ['Explain what a sense of humor is.', []],
  ['Compare the wit of Oscar Wilde with the humor of Mark Twain.', []],
  ['Describe how a hotel can match different styles of decor.', []],
  ['Explain why the writing of Jane Austen is still popular.', []],
  ['Describe the persona of a typical startup founder.', []],
  ['Explain how actors take on the role of a villain.', []],
  ['Explain why some people feel as if they were strangers in their own town.', []],
  ['You are right to ask: how does a vaccine work?', []],
  ['Explain why you should never give up on your dreams.', []],
  ['Explain why some students cannot write essays.', []],
  ["Explain why some teams don't write tests.", []],
  ['Do not cite any sources; explain the idea in your own words.', ['exclusion']],
  ['Summarize the meeting and use no bullet points.', ['exclusion']],
  ['Extract the dates. Do not output your reasoning.', ['exclusion']],
  ['Act as a linux terminal; do not write explanations.', ['exclusion', 'tone_style']],
];

describe('tagConstraints', () => {
  it.each(CASES)('%s', (instruction, expected) => {
    expect(typesOf(instruction)).toEqual([...expected].sort());
  });

  it('has positives and negatives for every type', () => {
    for (const { id } of CONSTRAINT_TYPES) {
      expect(CASES.some(([, types]) => types.length === 1 && types[0] === id)).toBe(true);
    }
    expect(CASES.length).toBeGreaterThanOrEqual(40);
  });

  it('points every tag at the words that triggered it', () => {
    const instruction =
      'Write a formal email to a client, under 150 words, in Spanish, without mentioning prices, with three bullet points';
    const evidence = Object.fromEntries(tagConstraints(instruction).map((t) => [t.type, t.text]));
    expect(evidence).toEqual({
      tone_style: 'formal',
      domain_format: 'email',
      linguistic: 'under 150 words',
      multilingual: 'in Spanish',
      exclusion: 'without mentioning',
      document_structure: 'three bullet points',
    });
    for (const [text] of CASES) {
      for (const tag of tagConstraints(text)) expect(text.slice(tag.start, tag.end)).toBe(tag.text);
    }
  });

  it('returns tags in text order', () => {
    const starts = tagConstraints(
      'In Spanish and without jargon, write a formal email of under 100 words for a CTO, as a numbered list.',
    ).map((t) => t.start);
    expect(starts.length).toBeGreaterThanOrEqual(6);
    expect(starts).toEqual([...starts].sort((a, b) => a - b));
  });

  it('is case-insensitive', () => {
    expect(typesOf('EXPLAIN PHOTOSYNTHESIS IN FRENCH, IN UNDER 100 WORDS.')).toEqual([
      'linguistic',
      'multilingual',
    ]);
  });
});

describe('length limits', () => {
  const length = (instruction: string): ConstraintTag => {
    const tag = tagOf(instruction, 'linguistic');
    expect(tag.subtype).toBe('length');
    return tag;
  };

  it('parses ceilings, floors, exact counts, ranges and targets', () => {
    expect(length('Write a formal email to a client, under 150 words, in Spanish')).toMatchObject({
      max: 150,
      unit: 'words',
    });
    expect(length('Summarize the article in no more than 50 words.')).toMatchObject({
      max: 50,
      unit: 'words',
    });
    expect(length('Do not exceed 1,200 characters.')).toMatchObject({ max: 1200, unit: 'characters' });
    expect(length("Don't use more than 80 words.")).toMatchObject({ max: 80, unit: 'words' });
    expect(length('Write a product review of at least 200 words.')).toMatchObject({
      min: 200,
      unit: 'words',
    });
    expect(length('Write a limerick in exactly five lines.')).toMatchObject({
      min: 5,
      max: 5,
      unit: 'lines',
    });
    expect(length('Answer in two to three sentences.')).toMatchObject({ min: 2, max: 3, unit: 'sentences' });
    expect(length('Write about 200 words on tides.')).toMatchObject({ target: 200, unit: 'words' });
    expect(length('Give a one-sentence summary of the plot.')).toMatchObject({ max: 1, unit: 'sentences' });
    expect(length('Describe it in a single sentence.')).toMatchObject({ max: 1, unit: 'sentences' });
  });

  it('keeps one tag for overlapping phrasings of the same limit', () => {
    const tags = tagConstraints("Don't use more than 80 words.");
    expect(tags).toHaveLength(1);
    expect(tags[0]!.text).toBe("Don't use more than 80 words");
  });

  it('tags other linguistic characteristics with their subtype', () => {
    expect(tagOf('Describe a sunset using only the active voice.', 'linguistic').subtype).toBe('voice');
    expect(tagOf('Write a poem about the sea that rhymes.', 'linguistic').subtype).toBe('sound');
    expect(tagOf("Begin your answer with the word 'Imagine'.", 'linguistic').subtype).toBe('affix');
  });
});

describe('precision', () => {
  it('finds nothing in plain instructions', () => {
    const plain = [
      'Explain how photosynthesis works.',
      'Describe the history of the Roman Empire.',
      'Give some tips for growing tomatoes.',
      'Summarize the causes of the First World War.',
      'Write a story about a lost dog finding its way home.',
      'What are the benefits of regular exercise?',
      'Compare cats and dogs as pets.',
      'Explain how a bill becomes a law in the United States.',
      'Describe the water cycle.',
      'How do vaccines train the immune system?',
    ];
    for (const instruction of plain) expect(tagConstraints(instruction), instruction).toEqual([]);
  });
});

describe('CONSTRAINT_TYPES and summarizeConstraints', () => {
  it('lists the 12 types in the method order, with labels', () => {
    expect(CONSTRAINT_TYPES.map((t) => t.id)).toEqual([
      'data_format',
      'document_structure',
      'domain_format',
      'inclusion',
      'exclusion',
      'citation',
      'prior_condition',
      'target_audience',
      'tone_style',
      'emotion',
      'linguistic',
      'multilingual',
    ]);
    for (const { label } of CONSTRAINT_TYPES) expect(label.length).toBeGreaterThan(0);
  });

  it('counts tags per type and distinct types', () => {
    const summary = summarizeConstraints(
      tagConstraints(
        'Write a formal email in Spanish, under 150 words. Do not mention prices or use emojis.',
      ),
    );
    expect(summary.counts.exclusion).toBe(1);
    expect(summary.counts.citation).toBe(0);
    expect(summary.distinctTypes).toBe(5);
    expect(Object.keys(summary.counts)).toHaveLength(12);
    expect(summarizeConstraints([]).distinctTypes).toBe(0);
  });
});

describe('robustness', () => {
  it('tags a page with a long rule of dashes (a genre pattern once backtracked exponentially on it)', () => {
    const page = `Contador de Visitas\n\n${'-'.repeat(150)}\n\nVol 26, No 1 (2019): enero-abril. Write a short-term memo.`;
    expect(typesOf(page)).toEqual(['domain_format']);
  });
});
