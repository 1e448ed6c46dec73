/**
 * Rule-based tagger for the 12 AIR constraint types: a model-free measure of how complex an instruction is.
 *
 * Precision over recall. A pattern fires only where the words are used as an instruction about the answer
 * ("in JSON", "a formal email", "under 150 words"), not where they are the topic ("explain what JSON is",
 * "set the table for dinner"). Constructions that are often topical are guarded by a cue (an imperative
 * position, an output verb, a head noun such as "tone" or "email"), so some real constraints are missed:
 * paraphrases ("keep it brief"), constraints without a cue word, recipients ("an email to a client"), and
 * anything not in English. Counts from this tagger are a lower bound on the number of constraints.
 */

export const CONSTRAINT_TYPES = [
  { id: 'data_format', label: 'Data format' },
  { id: 'document_structure', label: 'Document structure' },
  { id: 'domain_format', label: 'Domain-specific format' },
  { id: 'inclusion', label: 'Inclusion' },
  { id: 'exclusion', label: 'Exclusion' },
  { id: 'citation', label: 'Citation' },
  { id: 'prior_condition', label: 'Prior condition' },
  { id: 'target_audience', label: 'Target audience' },
  { id: 'tone_style', label: 'Tone and style' },
  { id: 'emotion', label: 'Emotion' },
  { id: 'linguistic', label: 'Linguistic characteristics' },
  { id: 'multilingual', label: 'Multilingual' },
] as const;

export type ConstraintType = (typeof CONSTRAINT_TYPES)[number]['id'];

export type LengthUnit = 'words' | 'sentences' | 'characters' | 'lines' | 'syllables' | 'tokens';

export interface ConstraintTag {
  readonly type: ConstraintType;
  /** A finer kind within the type where the rule knows it (linguistic: length, voice, person, tense, ...). */
  readonly subtype?: string;
  /** Evidence: instruction.slice(start, end) === text. */
  readonly start: number;
  readonly end: number;
  readonly text: string;
  /** Length limits only: the bounds stated ("exactly 3" sets both; "in 3 sentences" is read as a ceiling). */
  readonly min?: number;
  readonly max?: number;
  /** Length limits only: an approximate target ("about 200 words"). */
  readonly target?: number;
  readonly unit?: LengthUnit;
}

export interface ConstraintSummary {
  /** Tags per type, every type present (0 when absent). */
  readonly counts: Readonly<Record<ConstraintType, number>>;
  /** Number of types with at least one tag: the instruction's complexity in the AIR sense. */
  readonly distinctTypes: number;
}

interface Rule {
  readonly type: ConstraintType;
  readonly subtype?: string;
  readonly pattern: RegExp;
}

// ---------------------------------------------------------------------------------------------------------
// Shared vocabulary (regex source fragments)

const NUM_WORDS: Readonly<Record<string, number>> = {
  one: 1, two: 2, three: 3, four: 4, five: 5, six: 6, seven: 7, eight: 8, nine: 9, ten: 10,
  eleven: 11, twelve: 12, fifteen: 15, twenty: 20, thirty: 30, forty: 40, fifty: 50, hundred: 100,
}; // prettier-ignore
const NUM = String.raw`(?:\d{1,3}(?:,\d{3})+|\d+|a\s+single|single|${Object.keys(NUM_WORDS).join('|')})`;
const UNIT = String.raw`(?:words?|sentences?|characters?|chars?|lines?|syllables?|tokens?)`;

/** Where an imperative verb can start: the start of the text, a clause break, or after a modal or cue. */
const IMPERATIVE = String.raw`(?<=(?:^|[.;:!?,\n(])\s*|\b(?:and|then|also|please|but|plus|must|should|always|you|sure\s+to|remember\s+to|forget\s+to|want\s+you\s+to|need\s+to|needs\s+to|has\s+to|have\s+to)\s+)`;

const FORMATS = String.raw`(?:json|csv|tsv|yaml|xml|html|markdown|latex|toml|key[\s-]value\s+pairs|code\s+blocks?|plain\s+text)`;

const GENRES = String.raw`(?:e-?mails?|cover\s+letters?|letters?|memos?|memorandums?|press\s+releases?|recipe\s+cards?|recipes?|r[ée]sum[ée]s?|cvs?|haikus?|sonnets?|limericks?|tweets?|screenplays?|legal\s+clauses?|contract\s+clauses?|contracts?|api\s+(?:specs?|specifications?|documentation|reference)|openapi\s+specs?|user\s+stor(?:y|ies)|job\s+(?:postings?|ads?|descriptions?)|lesson\s+plans?|invoices?|faqs?|readmes?|meeting\s+minutes|business\s+plans?|grant\s+proposals?|product\s+descriptions?|news\s+articles?|blog\s+posts?|newsletters?|linkedin\s+posts?|abstracts?|op-eds?|obituar(?:y|ies)|eulog(?:y|ies)|commit\s+messages?|release\s+notes|changelogs?|bug\s+reports?|itinerar(?:y|ies)|syllab(?:us|i)|privacy\s+polic(?:y|ies)|terms\s+of\s+service|soap\s+notes?)`;

const TONES = String.raw`(?:formal|informal|semi-formal|casual|conversational|humorous|funny|witty|playful|light-?hearted|serious|professional|academic|scholarly|persuasive|sarcastic|ironic|satirical|neutral|objective|impartial|authoritative|friendly|whimsical|poetic|diplomatic|polite|respectful|blunt|dramatic|journalistic|motivational|inspirational|confident|assertive|matter-of-fact|tongue-in-cheek|colloquial|punchy|lyrical|straightforward|engaging)`;

const EMOTIONS = String.raw`(?:empathetic|empathic|compassionate|sympathetic|reassuring|comforting|enthusiastic|excited|encouraging|supportive|warm|heartfelt|uplifting|cheerful|joyful|optimistic|hopeful|upbeat|passionate|nostalgic|melancholic|melancholy|sad|somber|sombre|angry|apologetic|grateful|thankful|caring|gentle|sentimental|affectionate|loving|celebratory|wistful|bittersweet|heartwarming|tender|kind)`;

/** Words a tone or emotion adjective may be chained with before its head noun ("a short, warm and formal email"). */
const ADJ_CHAIN = String.raw`(?:[\s,]+(?:and\s+|or\s+|but\s+|yet\s+)?(?:${TONES}|${EMOTIONS}|very|slightly|more|highly|deeply|somewhat|short|brief|long|quick|simple|concise|little|personal|thank-you|blog|news|cover|${NUM}-(?:word|sentence|line|paragraph|minute|page)))*`;

/** What a tone or emotion adjective must describe to count: the manner of writing, or the piece itself. */
const STYLE_HEADS = String.raw`(?:tone|voice|style|manner|register|way|feel|mood|e-?mail|letter|message|note|reply|response|answer|speech|toast|essay|story|poem|review|post|summary|explanation|description|article|pitch|announcement|introduction|overview|guide|bio|blurb|invitation|apology|eulogy|memo|tweet|caption|greeting|newsletter|advertisement|slogan|song|lullaby|haiku|limerick|sonnet|paragraph|narrative|monologue|dialogue|report|proposal|request|reminder|update|complaint)`;

/** A tone or emotion adjective after a copula or "keep it": "be empathetic", "keep it casual and friendly". */
const COPULA = String.raw`(?<=(?:(?:^|[.;:!?,\n(])\s*|\b(?:and|please|but|always|also)\s+)be\s+|\b(?:sound|sounds|keep\s+it|make\s+it|keep\s+the\s+(?:tone|voice|style)|stay|remain|tone\s+(?:should|must)\s+be|tone\s+is)\s+)(?:(?:very|more|slightly|highly|deeply|somewhat|quite|extremely|fairly|short|brief|concise|simple|clear|${TONES}|${EMOTIONS})[\s,]+(?:and\s+|but\s+|yet\s+)?)*`;

/** Qualities of the writing that style instructions ask for ("a touch of humor", "infuse it with wit"). */
const STYLE_QUALITIES = String.raw`humou?r|wit|sarcasm|satire|irony|puns|whimsy|levity|wordplay|ambiguity|flair|elegance|eloquence|charm|mirth|panache|gravitas`;
/** Quantifiers of a quality that only style instructions use ("a touch of", "a dash of"). */
const STYLE_MEASURE = String.raw`(?:a\s+)?(?:touch|dash|sprinkle|sprinkling|hint|pinch|splash|layer|note|bit)\s+of`;
/** What is imitated in a style instruction: "the wit of", "prose reminiscent of". */
const STYLE_NOUNS = String.raw`(?:style|styles|stylings?|prose|tone|voice|wit|humou?r|language|manner|flair|eloquence|writing|rhythm|meter|metre|verse|charm|grace|diction|cadence|elegance|vocabulary|phrasing|penmanship|persona|demeanou?r|sensibilit(?:y|ies)|spirit|essence|narration|storytelling|banter|dialogue)`;

const LANGS = String.raw`(?:english|french|spanish|german|italian|portuguese|chinese|mandarin|cantonese|japanese|korean|arabic|hindi|russian|dutch|swedish|norwegian|danish|finnish|polish|turkish|greek|hebrew|vietnamese|thai|indonesian|swahili|latin|persian|farsi|urdu|bengali|ukrainian|czech|romanian|hungarian|tagalog)`;

/** Strong audience nouns: after "for", these name who reads the answer rather than what it is about. */
const AUDIENCE_STRONG = String.raw`(?:beginners|novices|newcomers|newbies|laypeople|laymen|a\s+layperson|a\s+layman|non-experts|non-specialists|non-technical\s+(?:readers|audiences?|people|users|stakeholders|staff|managers)|non-native\s+(?:speakers|readers)|experts|specialists|professionals|practitioners|(?:senior\s+|junior\s+)?(?:software\s+)?(?:engineers|developers|programmers)|executives|(?:a\s+|the\s+|our\s+|your\s+)?(?:cto|ceo|cfo|coo|cio)s?|investors|stakeholders|policymakers|researchers|academics|clinicians|physicians|(?:high[\s-]school|college|university|graduate|undergraduate|medical|law|middle[\s-]school)\s+students|(?:an?\s+)?(?:general|lay|technical|non-technical|young|adult|academic|expert|broad|wide|popular)\s+(?:audience|readership|public))`;

/** Weak audience nouns: "gifts for children" is a topic, so these need an explain/write verb before them. */
const AUDIENCE_WEAK = String.raw`(?:children|kids|child|kid|toddlers?|preschoolers?|teens|teenagers?|parents|patients|seniors|grandparents?|grandmother|grandfather|students|pupils|customers|beginners?|novices?|layperson|non-experts?|experts?|ctos?|ceos?|executives?|(?:\d+|[a-z]+)[\s-]year[\s-]olds?)`;

const r = (source: string): RegExp => new RegExp(source, 'gi');
const rules = (type: ConstraintType, sources: readonly string[]): Rule[] =>
  sources.map((source) => ({ type, pattern: r(source) }));

// ---------------------------------------------------------------------------------------------------------
// The rules, one table per type, in the method's order.

const RULES: readonly Rule[] = [
  // data_format: a format name alone is often the topic ("explain JSON"), so it needs "in/as/into", an
  // output verb, or "<format> format". "in JSON" after verbs such as "stored" describes data, not the answer.
  ...rules('data_format', [
    String.raw`(?<!\b(?:stored|encoded|represented|parsed|handled|defined|used|supported|nested|serialized|works?)\s+)\b(?:in|as|into)\s+(?:an?\s+|one\s+|valid\s+|proper\s+|well-formed\s+|strict\s+|pure\s+|raw\s+|single\s+|fenced\s+|markdown\s+|html\s+|simple\s+|two-column\s+|three-column\s+|comparison\s+|comparative\s+|structured\s+)*(?:${FORMATS}|tables?|tabular\s+form|spreadsheet)\b`,
    String.raw`\b(?:in|as|use|using|follow(?:ing)?|with)\s+(?:an?\s+|the\s+)?(?:${FORMATS}|table)[\s-]+(?:format|layout|form)\b`,
    String.raw`\b(?:return|output|respond\s+with|reply\s+with|answer\s+with|produce|generate|give\s+me|emit)\s+(?:only\s+)?(?:an?\s+|valid\s+|well-formed\s+)*(?:${FORMATS})(?:\s+(?:object|array|document|file|snippet))?\b`,
    String.raw`${IMPERATIVE}(?:use|format\s+(?:it\s+|this\s+)?(?:with|in))\s+${FORMATS}\b`,
    String.raw`\btabulate\b`,
    // A table is furniture unless it has columns or rows, or compares/lists something.
    String.raw`\btables?\s+(?:with|having)\s+(?:[\w-]+\s+){0,2}?(?:columns|rows)\b|\btables?\s+(?:comparing|contrasting|summari[sz]ing|listing|that\s+(?:compares|summari[sz]es|lists))\b|\bcolumns?\s+(?:for|named|labell?ed|titled|headed)\b`,
  ]),

  // document_structure: counted parts, lists, headings, fixed openings and closings of the document.
  ...rules('document_structure', [
    // "the two sections of the constitution" names content, so a count right after "the" does not fire.
    String.raw`(?<!\bthe\s+)\b${NUM}[\s-]+(?:(?:short|brief|separate|distinct|numbered|main|clear|concise|titled|labell?ed|key)\s+)*(?:sections?|paragraphs?|bullet(?:ed)?\s+points?|bullets|headings?|subheadings?|stanzas?|numbered\s+steps|chapters?|slides?)\b`,
    String.raw`\bbullet(?:ed)?[\s-]*(?:points?|lists?)\b|\bbullets\b`,
    String.raw`\bnumbered\s+(?:list|steps|points|items|sections)\b|\bstep-by-step\s+(?:guide|instructions|list|format|breakdown)\b|\b(?:as|in)\s+(?:an?\s+)?(?:numbered\s+|bulleted\s+|short\s+|ordered\s+)?(?:list|checklist)(?:\s+form(?:at)?)?\b`,
    String.raw`\b(?:with|use|using|add|include|under|organi[sz]ed?\s+(?:into|under|by)|divided\s+into|split\s+into|broken\s+into|structured\s+(?:into|with|as))\s+(?:(?:clear|separate|descriptive|short|markdown|bold|${NUM})\s+)*(?:headings?|subheadings?|headers|section\s+(?:titles|headings)|sections|subsections|parts)\b`,
    String.raw`\b(?:start|begin|open|end|close|finish|conclude)\s+with\s+(?:an?\s+|one\s+)?(?:(?:brief|short|one-sentence|bold|clear)\s+)*(?:title|heading|introduction|intro|summary|conclusion|overview|tl;?dr|call\s+to\s+action)\b`,
    String.raw`\btable\s+of\s+contents\b`,
  ]),

  // domain_format: a genre with conventions of its own, when the instruction asks for one (the verb sits in
  // a lookbehind so the evidence is the genre noun itself; "a story about an email" is not an email).
  ...rules('domain_format', [
    String.raw`(?<=\b(?:write|draft|compose|prepare|create|produce|pen|generate|rewrite\s+(?:it|this|\w+)\s+as|format\s+(?:it|this|the\s+\w+)\s+as|turn\s+(?:it|this)\s+into|in\s+the\s+form\s+of|structured\s+as|written\s+as)\s+(?:an?\s+|the\s+|one\s+)?(?:(?!(?:about|on|of|for|to|with|from|the|that|which|and|in)\b)\w[\w-]*,?\s+){0,3}?)${GENRES}\b`,
    // Chicago, Harvard and Vancouver are places and universities too, so they need "style" or "format".
    String.raw`\b(?:apa|mla|ieee|ama|harvard|chicago|vancouver|bluebook|turabian|oscola)[\s-]+(?:style|format|formatted|citations?|references?|referencing)\b`,
    String.raw`(?<=\b(?:in|using|use|follow|following|per)\s+(?:the\s+)?)(?:apa|mla|ieee|bluebook|turabian)\b`,
    String.raw`\b(?:recipe\s+card|subject\s+line|given[\s/-]when[\s/-]then)\b`,
  ]),

  // inclusion: "include/mention/cover" only in an imperative position ("Explain how to cover a wound" is a topic).
  ...rules('inclusion', [
    String.raw`${IMPERATIVE}(?:include|mention|cover|incorporate|feature|highlight|touch\s+on|weave\s+in|emphasi[sz]e)\b(?!\s+(?:letter|page|art)\b)`,
    String.raw`\b(?:including|(?:that|which)\s+(?:includes?|mentions?|covers?)|with\s+(?:a\s+)?mention\s+of|(?:must|should)\s+(?:contain|feature))\b`,
    String.raw`\b(?:use|using)\s+the\s+(?:key)?(?:words?|phrases?|terms?|expressions?)\s+["'“‘]`,
    String.raw`\b(?:at\s+least|exactly)\s+${NUM}\s+(?:examples?|statistics|facts|tips|quotes?|reasons|anecdotes|case\s+studies|data\s+points|keywords)\b`,
    String.raw`\bwith\s+(?:(?:${NUM}|an?|concrete|specific|real[\s-]world|practical|some)\s+)+examples?\b`,
  ]),

  // exclusion: negated content verbs, "without ...ing", "avoid" in an imperative position, "no jargon".
  ...rules('exclusion', [
    // "do not use more than 100 words" is a length limit, not an exclusion.
    String.raw`\b(?:do\s+not|don't|dont|never|must\s+not|mustn't|should\s+not|shouldn't|cannot|can't)\s+(?:ever\s+|explicitly\s+|directly\s+)?(?:mention|include|use|reference|refer\s+to|discuss|reveal|name|say|talk\s+about|add|cite|list|bring\s+up|give\s+away|rely\s+on|repeat|go\s+into|make\s+up|invent|speculate|recommend|suggest|write\s+about|touch\s+on|contain|translate)\b(?!\s+(?:more|over|fewer|less|beyond|longer|\d))`,
    // Output verbs only as a command ("Do not output your analysis"): "you should never give up" is a topic.
    String.raw`(?<=(?:^|[.;:!?,\n(])\s*|\b(?:and|please|but|also|then)\s+)(?:do\s+not|don't|dont)\s+(?:output|print|provide|give|explain|write|type|show)\b(?!\s+(?:up|in|out|more|over|fewer|less|beyond|longer|anything\s+(?:more|longer|else\s+than))\b|\s+\d)`,
    String.raw`\bwithout\s+(?:ever\s+|explicitly\s+|directly\s+)?(?:mentioning|using|referring\s+to|including|discussing|naming|revealing|citing|giving\s+away|repeating|relying\s+on|touching\s+on|bringing\s+up|resorting\s+to)\b`,
    String.raw`\b(?:without|free\s+(?:of|from))\s+(?:any\s+)?(?:technical\s+)?(?:jargon|spoilers|emojis?|hashtags|slang|acronyms|abbreviations|clich[eé]s|buzzwords|profanity)\b|\b(?:jargon|emoji|spoiler|clich[eé])-free\b`,
    String.raw`${IMPERATIVE}(?:avoid|exclude|omit|skip|leave\s+out)\b|\b(?:steer\s+clear\s+of|refrain\s+from|stay\s+away\s+from)\b|(?<=[,;]\s*|\bwhile\s+|\bbut\s+)(?:avoiding|excluding|omitting|leaving\s+out)\b`,
    String.raw`\bno\s+(?:mention|mentions|jargon|emojis?|hashtags|spoilers|slang|acronyms|buzzwords|clich[eé]s|profanity|technical\s+(?:terms|jargon)|references\s+to|discussion\s+of|personal\s+opinions?|opinions|speculation|bullet\s+points|headings|markdown)\b`,
  ]),

  // citation: citing, sources and references as things to provide, and quoting (not "a price quote").
  ...rules('citation', [
    String.raw`\bcit(?:e|es|ing|ations?)\b(?!\s+(?:an?\s+)?examples?\b)`,
    String.raw`\b(?:with|include|including|provide|add|give|list\s+your|back\s+(?:it\s+|this\s+|claims\s+|them\s+)?up\s+with|support(?:ed)?\s+(?:it\s+|claims\s+)?(?:with|by))\s+(?:(?:your|the|proper|credible|reliable|reputable|academic|peer-reviewed|at\s+least|a|${NUM})\s+)*(?:sources|references|citations|bibliography|footnotes)\b`,
    String.raw`\b(?:bibliography|works\s+cited|reference\s+list|list\s+of\s+references|footnotes|endnotes)\b`,
    String.raw`\bquot(?:e|ing)\s+(?:directly\s+|verbatim\s+)?(?:from|the\s+(?:text|passage|source|author|document|original|article|relevant)|at\s+least|${NUM}|relevant|specific|passages?|lines?)\b|\b(?:direct|verbatim)\s+quot(?:es|ations?)\b`,
  ]),

  // prior_condition: premises and conditions the answer must work under.
  ...rules('prior_condition', [
    String.raw`\b(?:assuming|presuming|supposing)\s+(?:that|the|you|a|an|I|we|it|they|your)\b`,
    String.raw`${IMPERATIVE}(?:assume|suppose|imagine|pretend)\b`,
    String.raw`\b(?:given|provided)\s+that\b|\b(?:on|under)\s+the\s+(?:assumption|premise|condition)\b|\bin\s+(?:the\s+)?(?:case|event)\s+(?:that|where)\b`,
    String.raw`\bbefore\s+(?:answering|responding|writing|proceeding|you\s+(?:answer|respond|begin|start|write|reply))\b|${IMPERATIVE}(?:first\s*,?|start\s+by)\s+(?:check(?:ing)?|confirm(?:ing)?|stat(?:e|ing)|verify(?:ing)?|identify(?:ing)?|restat(?:e|ing)|defin(?:e|ing)|clarify(?:ing)?)\b`,
    // A conditional instruction: "if ..., then/otherwise ...", or "if the user/you ...".
    String.raw`\bif\b[^.?!\n]{1,80}?\b(?:then|otherwise)\b|\bif\s+(?:the\s+)?(?:user|reader|question|input|request|data|topic)\b|\bif\s+you\s+(?:are\s+(?:unsure|not\s+sure)|cannot|can't|don't\s+know)\b`,
    String.raw`\bunless\s+(?:otherwise\s+(?:specified|stated|noted)|asked|requested|the\s+(?:user|reader))\b`,
  ]),

  // target_audience: who the answer is for.
  ...rules('target_audience', [
    String.raw`\bfor\s+(?:(?:an?|the|your|our|complete|absolute|total|curious|busy)\s+)*${AUDIENCE_STRONG}\b`,
    String.raw`(?<=\b(?:explain|describe|write|tell|teach|summari[sz]e|present|introduce|pitch|story|poem|book|guide|lesson|song|article|explanation|summary)\b[^.?!\n]{0,60}?)\b(?:to|for)\s+(?:(?:an?|my|your|young|small|little)\s+)*${AUDIENCE_WEAK}\b`,
    String.raw`\b(?:aimed\s+at|targeted\s+at|geared\s+(?:toward|towards|to)|tailored\s+(?:to|for)|accessible\s+to|understandable\s+(?:to|by)|written\s+for|intended\s+for|pitched\s+at)\s+(?:(?:an?|the|your|our)\s+)?[\w-]+`,
    String.raw`\btarget\s+audience\b|\b(?:the\s+)?(?:audience|readers?|readership)\s+(?:is|are|will\s+be|consists?\s+of)\b`,
    String.raw`\b(?:like|as\s+if)\s+(?:I'?m|I\s+am|I\s+were)\s+(?:an?\s+)?[\w-]+|\bas\s+if\s+(?:you\s+were\s+)?(?:explaining|talking|speaking|writing)\s+to\b|\beli5\b`,
  ]),

  // tone_style: a tone adjective only counts when it qualifies the writing ("a formal tone", "a funny
  // story", "keep it casual"); "a serious illness" and "professional athletes" do not. The evidence is the adjective.
  ...rules('tone_style', [
    String.raw`(?<![\w-])${TONES}(?=${ADJ_CHAIN}\s+${STYLE_HEADS}\b)`,
    String.raw`${COPULA}(?<![\w-])${TONES}\b`,
    String.raw`\bin\s+the\s+(?:[\w-]+\s+){0,3}?(?:style|voice|manner|vein)\s+of\b`,
    String.raw`\b(?:with|add|adding|use|using|inject(?:ing)?)\s+(?:(?:some|an?|subtle|light|gentle|dry|sardonic|playful|${STYLE_MEASURE})\s+)*(?:(?!(?:the|his|her|their|its)\b)[\w-]+\s+)?(?:${STYLE_QUALITIES})\b`,
    String.raw`\b(?:infus(?:e|ed|ing)|imbu(?:e|ed|ing)|sprinkl(?:e|ed|ing)|pepper(?:ed|ing)?|lac(?:e|ed|ing)|blend(?:ing)?\s+in|weav(?:e|ing)\s+in|incorporat(?:e|ing))\s+(?:(?:[\w-]+\s+){0,3}?with\s+)?(?:(?:some|an?|the|subtle|light|gentle|dry|sardonic|playful|${STYLE_MEASURE})\s+)*(?:[\w-]+\s+)?(?:${STYLE_QUALITIES})\b`,
    String.raw`\b${STYLE_MEASURE}\s+(?:[\w-]+\s+)?(?:${STYLE_QUALITIES})\b`,
    // Imitation: "the wit of Oscar Wilde", "prose reminiscent of Poe", "channel your inner Shakespeare".
    String.raw`(?<=\b${STYLE_NOUNS}\b[^.;!?\n]{0,40}?)\b(?:reminiscent\s+of|characteristic\s+of|typical\s+of|akin\s+to|befitting|evocative\s+of|in\s+the\s+(?:manner|vein|tradition)\s+of|inspired\s+by)\b`,
    String.raw`\b(?:(?:respond|reply|answer|write|speak|narrate|explain|tell)\w*\s+(?:it\s+)?(?:with|using|in)|channel(?:l?ing)?|embod(?:y|ying)|adopt(?:ing)?|captur(?:e|ing)|mimic(?:king)?|emulat(?:e|ing)|imitat(?:e|ing)|evok(?:e|ing)|echo(?:ing)?)\s+(?:the\s+|an?\s+)?(?:[\w-]+,?\s+(?:and\s+)?){0,3}?${STYLE_NOUNS}\s+of\b`,
    String.raw`\bchannel(?:l?ing)?\s+your\s+inner\b`,
  ]),

  // tone_style / persona: the answer is written in a role ("act as a tour guide", "respond as if you were
  // Lincoln"); "as if you were explaining to a child" names an audience instead.
  ...(
    [
      String.raw`${IMPERATIVE}(?:act|pose|role-?play|respond|answer|reply|speak)\s+as\s+(?:an?|the|if|though)\b(?!\s+(?:you\s+were\s+)?(?:explaining|talking|speaking|writing)\s+to\b)`,
      String.raw`\bI\s+(?:want|need|would\s+like)\s+you\s+to\s+(?:act|pose|play|role-?play)\b`,
      String.raw`\b(?:respond|reply|answer|write|writing|written|speak|narrat(?:e|ed)|talk|explain|tell|describe|craft|frame|compose|present|deliver|pen)\w*\s+(?:[\w-]+\s+){0,4}?as\s+(?:if|though)\s+(?:you\s+(?:were|are)|you're|(?:written|narrated|told|spoken|penned|delivered)\s+by)\b(?!\s+(?:explaining|talking|speaking|writing)\s+to\b)`,
      String.raw`${IMPERATIVE}(?:take\s+on|adopt|assume|embody|channel|play)\s+the\s+(?:[\w-]+\s+){0,2}?(?:role|persona|character|voice|perspective)\s+of\b|\b(?:in|with|channel(?:l?ing)|embodying|adopting)\s+the\s+(?:[\w-]+\s+){0,2}?(?:persona|voice)\s+of\b`,
      String.raw`\b(?:imagine|picture|position|consider|see|envision|think\s+of|cast)\s+yourself\s+(?:as\s+)?(?:an?|the)\b`,
      // "You are a doctor in Victorian England ...": a role set at the very start, as system prompts do.
      String.raw`^\s*(?:you\s+are|you're)\s+(?:now\s+)?(?:an?|the)\s+(?!(?:good|great|bad|right|wrong|only|first|best)\b)`,
    ] as const
  ).map((source): Rule => ({ type: 'tone_style', subtype: 'persona', pattern: r(source) })),

  // emotion: the feeling the answer conveys, same construction as tone, plus "convey/show/with <feeling>".
  ...rules('emotion', [
    String.raw`(?<![\w-])${EMOTIONS}(?=${ADJ_CHAIN}\s+${STYLE_HEADS}\b)`,
    String.raw`${COPULA}(?<![\w-])${EMOTIONS}\b`,
    String.raw`\b(?:with|show(?:ing)?|convey(?:ing)?|express(?:ing)?|full\s+of|filled\s+with|evok(?:e|ing)|a\s+sense\s+of)\s+(?:(?:genuine|real|deep|some|great|a\s+touch\s+of|a\s+lot\s+of)\s+)?(?:empathy|compassion|enthusiasm|excitement|warmth|sympathy|gratitude|joy|sadness|nostalgia|optimism|passion|urgency|reassurance|encouragement|kindness)\b`,
    String.raw`\breassure\s+(?:the\s+(?:reader|user|customer|patient|client)|them|readers)\b|\backnowledge\s+(?:their|the\s+\w+'s)\s+(?:feelings|frustration|concerns?)\b`,
  ]),

  // linguistic / length: the named groups min, max, target and unit carry the limit (see parseLength).
  ...(
    [
      String.raw`\b(?:under|below|fewer\s+than|less\s+than|no\s+more\s+than|not\s+more\s+than|no\s+longer\s+than|at\s+most|up\s+to|a\s+maximum\s+of|maximum\s+of|max(?:imum)?|within|in|using|limit(?:ed)?\s+(?:it\s+|yourself\s+|the\s+\w+\s+)?to|(?:do\s+not|don't|must\s+not|should\s+not|never)\s+(?:exceed|(?:use|write|go)\s+(?:more\s+than|over|beyond))|not\s+exceed(?:ing)?)\s+(?<max>${NUM})\s+(?<unit>${UNIT})\b`,
      String.raw`\b(?:at\s+least|more\s+than|over|no\s+fewer\s+than|no\s+less\s+than|not\s+less\s+than|a\s+minimum\s+of|minimum\s+of)\s+(?<min>${NUM})\s+(?<unit>${UNIT})\b`,
      String.raw`\b(?:exactly|precisely)\s+(?<exact>${NUM})\s+(?<unit>${UNIT})\b`,
      String.raw`\b(?:between\s+)?(?<min>${NUM})\s*(?:to|-|–|and|or)\s*(?<max>${NUM})\s+(?<unit>${UNIT})\b`,
      String.raw`(?:\b(?:about|around|roughly|approximately|approx\.?)\s+|~\s*)(?<target>${NUM})\s+(?<unit>${UNIT})\b`,
      String.raw`\b(?<max>${NUM})\s+(?<unit>${UNIT})\s+(?:or\s+(?:less|fewer)|max(?:imum)?|at\s+most|tops)\b`,
      String.raw`\b(?<min>${NUM})\s+(?<unit>${UNIT})\s+or\s+more\b`,
      String.raw`\b(?<unit>word|character|sentence)\s+(?:limit|cap)\s+(?:of\s+)?(?<max>${NUM})\b`,
      // "a 500-word essay", "a one-sentence summary": an adjectival size, read as a ceiling.
      String.raw`\b(?<max>${NUM})-(?<unit>word|sentence|character|line|syllable)\b`,
    ] as const
  ).map((source): Rule => ({ type: 'linguistic', subtype: 'length', pattern: r(source) })),

  // linguistic / other: grammar, vocabulary and sound of the text.
  ...(
    [
      ['voice', String.raw`\b(?:active|passive)\s+voice\b`],
      ['person', String.raw`\b(?:first|second|third)[\s-]person\b(?!\s+shooter)`],
      ['tense', String.raw`\b(?:present|past|future)\s+tense\b`],
      [
        'vocabulary',
        String.raw`\b(?:simple|plain|everyday|basic|easy)\s+(?:words|language|vocabulary|english|terms)\b|\bshort\s+sentences\b|\bmonosyllabic\b`,
      ],
      // "explain alliteration" is a topic; using it is the constraint.
      [
        'sound',
        String.raw`\brhym(?:ing|ed)\b|\b(?:that|which|should|must|to|lines)\s+rhymes?\b|\brhyme\s+scheme\b|\balliterative\b|(?<=\b(?:use|using|with|employ|full\s+of|plenty\s+of)\s+(?:some\s+|heavy\s+)?)(?:alliteration|onomatopoeia)\b|\biambic\s+pentameter\b|\bacrostic\b`,
      ],
      [
        'affix',
        String.raw`\b(?:start|begin|end|finish)(?:s|ing)?\s+(?:(?:each|every|your|the|its)\s+(?:\w+\s+)?)?with\s+(?:the\s+(?:exact\s+)?(?:words?|phrase|letter|sentence)\b|["'“‘])`,
      ],
      [
        'case',
        String.raw`(?<=\b(?:in|using|use|only|entirely\s+in)\s+(?:all\s+)?)(?:(?:lower|upper)[\s-]?case|all\s+caps|caps|capital\s+letters)\b`,
      ],
    ] as const
  ).map(([subtype, source]): Rule => ({ type: 'linguistic', subtype, pattern: r(source) })),

  // multilingual: "in Spanish" only as an answer language, so "in French cuisine" (a noun follows) does not fire.
  ...rules('multilingual', [
    String.raw`\b(?:in|into|to)\s+(?:both\s+)?(?:(?:simplified|traditional|brazilian|european|latin\s+american|mexican|canadian|british|american|modern|formal)\s+)?${LANGS}\b(?=\s*(?:$|[.,;:!?)\n])|\s+(?:and|or|only|please|with|for|using|without|as|then|but|so|while|about|on|that|which|language|instead|too|also|under|within|in)\b)`,
    String.raw`\b${LANGS}[\s-]+(?:language\s+)?(?:version|translation|subtitles|equivalents?|glossary)\b`,
    String.raw`${IMPERATIVE}translate\b|\btranslat(?:e|ed|ing)\s+(?:(?:it|this|them|the\s+\w+|each\s+\w+)\s+)?(?:into|to)\s+\w+`,
    String.raw`\b(?:with|include|including|add|provide|plus|followed\s+by)\s+(?:(?:an?|the|its|${LANGS})\s+)*translations?\b`,
    String.raw`\bbilingual\s+(?:\w+\s+)?(?:version|answer|response|format|text|summary|glossary|poem|story|list|table|e-?mail|letter|guide|menu|sign|card|post)\b|\b(?:make\s+it|be)\s+bilingual\b`,
  ]),
];

/** Types whose words, when negated ("no bullet points", "without citing"), state an exclusion instead. */
const NEGATABLE: ReadonlySet<ConstraintType> = new Set([
  'data_format',
  'document_structure',
  'domain_format',
  'inclusion',
  'citation',
  'multilingual',
]);
/** A negation one to three words before a match ("do not cite", "without a table of"); "don't forget to" is not one. */
const NEGATED_BEFORE =
  /\b(?:not|don't|dont|never|without|no|avoid(?:ing)?|exclude|excluding|omit|omitting)\s+(?!forget\b)(?:[\w'-]+\s+){0,2}$/i;

const LENGTH_UNITS: Readonly<Record<string, LengthUnit>> = {
  word: 'words',
  sentence: 'sentences',
  character: 'characters',
  char: 'characters',
  line: 'lines',
  syllable: 'syllables',
  token: 'tokens',
};

function parseNumber(text: string): number {
  const word = text.toLowerCase().replace(/\s+/g, ' ');
  if (word === 'single' || word === 'a single') return 1;
  return NUM_WORDS[word] ?? Number(word.replace(/,/g, ''));
}

function parseLength(groups: Readonly<Record<string, string | undefined>>): Partial<ConstraintTag> {
  const unitWord = groups['unit']?.toLowerCase().replace(/s$/, '');
  if (unitWord === undefined) return {};
  const limit: { min?: number; max?: number; target?: number; unit?: LengthUnit } = {
    unit: LENGTH_UNITS[unitWord] ?? 'words',
  };
  const { min, max, exact, target } = groups;
  if (exact !== undefined) limit.min = limit.max = parseNumber(exact);
  if (min !== undefined) limit.min = parseNumber(min);
  if (max !== undefined) limit.max = parseNumber(max);
  if (target !== undefined) limit.target = parseNumber(target);
  return limit;
}

/**
 * Tags the constraints an instruction states, in text order. Overlapping matches of the same type are kept
 * once (the earliest, then the longest); different types may share words ("a formal email" is tone and
 * domain format).
 */
export function tagConstraints(instruction: string): ConstraintTag[] {
  const found: ConstraintTag[] = [];
  for (const rule of RULES) {
    for (const match of instruction.matchAll(rule.pattern)) {
      const start = match.index;
      const end = start + match[0].length;
      if (end === start) continue;
      if (
        NEGATABLE.has(rule.type) &&
        NEGATED_BEFORE.test(instruction.slice(Math.max(0, start - 40), start))
      ) {
        continue;
      }
      found.push({
        type: rule.type,
        ...(rule.subtype === undefined ? {} : { subtype: rule.subtype }),
        start,
        end,
        text: match[0],
        ...(match.groups === undefined ? {} : parseLength(match.groups)),
      });
    }
  }
  found.sort((a, b) => a.start - b.start || b.end - b.start - (a.end - a.start));
  const kept: ConstraintTag[] = [];
  for (const tag of found) {
    const overlaps = kept.some((k) => k.type === tag.type && tag.start < k.end && k.start < tag.end);
    if (!overlaps) kept.push(tag);
  }
  return kept;
}

/** Counts tags per type and the number of distinct types (the AIR complexity of the instruction). */
export function summarizeConstraints(tags: readonly ConstraintTag[]): ConstraintSummary {
  const counts = Object.fromEntries(CONSTRAINT_TYPES.map(({ id }) => [id, 0])) as Record<
    ConstraintType,
    number
  >;
  for (const tag of tags) counts[tag.type] += 1;
  return { counts, distinctTypes: Object.values(counts).filter((n) => n > 0).length };
}
