// Writes the tokenizer test corpus as JSON: {"strings": [...], "id_sequences": [[...], ...]}.
// Deterministic (a seeded generator, no clock): the same file on every machine and every run.
// Hand-written tricky strings first, then generated ones of each kind the tokenizer must get
// right: scripts, emoji and ZWJ sequences, code, runs of white space, digits, contractions,
// added tokens inside text, decomposed characters (NFC), U+FFFD (where the C++ test puts invalid
// UTF-8), very long words. The id sequences are random token ids for the decoders.
//
// usage: node make_corpus.mjs OUT.json [VOCAB_SIZE]
import { writeFileSync } from 'node:fs';

const [outPath, vocabArg] = process.argv.slice(2);
if (!outPath) {
  console.error('usage: node make_corpus.mjs OUT.json [VOCAB_SIZE]');
  process.exit(2);
}
const vocabSize = Number(vocabArg ?? 151669);

// mulberry32: small, fast and the same in every JavaScript engine.
let seed = 0x5eed1234;
function random() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n) => Math.floor(random() * n);
const pick = (items) => items[int(items.length)];
const chars = (text) => Array.from(text);
const repeat = (n, make) => Array.from({ length: n }, make).join('');

const seeds = [
  '', ' ', '  ', '\n', '\r\n', '\t', 'a', 'A', '0', '.', "'", "''", "'s", "'S", "'ll", "'LL", "'Ll",
  "it's", "IT'S", "don't", "DON'T", "we're", "They've", "I'm", "you'll", "he'd", "'d've",
  "'ſ", "ſ'ſ", 'Hello world', 'Hello  world', 'Hello\tworld', 'Hello\nworld', ' leading', 'trailing ',
  '   three leading', 'trailing three   ', '\n\n\n', ' \n \n ', '\r\r\n\n', 'a\r\nb', '\u00a0nbsp',
  'x\u3000y', 'line\u2028sep', 'para\u2029sep', 'nel\u0085x', 'mvs\u180ex', 'zw\u200bsp', 'zwj\u200d',
  '\ufeffbom', '1234567890', '3.14159', '1,000,000', '٣٤٥', '२०२४', '①②③', 'Ⅻ', '½¾',
  'e\u0301', 'cafe\u0301', 'n\u0303o', 'A\u030a', '\u212b', '\u2126', 'ﬁ', 'Ｆｕｌｌ', 'ｶﾀｶﾅ',
  '\u1100\u1161\u11a8', '\u1112\u1161\u11ab\u1100\u1173\u11af', 'か\u3099', 'ハ\u309a', '한국어',
  '中文', '日本語のテキスト', 'العربية', 'עברית', 'ไทย', 'Ελληνικά', 'Русский', 'हिन्दी', 'ગુજરાતી',
  '😀', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇫🇷🇩🇪', '1️⃣', '❤️', '🧑🏿‍🚀', '\u{1f600}\u{1f601}',
  '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<think>', '</think>', '<tool_call>',
  '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n',
  '<|im_start|><|im_start|>', '<|im_start', 'im_start|>', '<|im_start |>', '< think>', '<think',
  '<<think>>', 'a<think>b</think>c', '<|endoftext|><|endoftext|>', 'x<|fim_prefix|>y<|fim_suffix|>z',
  '<|vision_start|><|image_pad|><|vision_end|>', '<tool_response>\n{}\n</tool_response>',
  'def f(x):\n    return x + 1\n', 'int main() {\n\treturn 0;\n}\n', '{"key": [1, 2, 3]}',
  '    indented', '\t\tdouble tab', 'if (a && b || !c) { x <<= 2; }', 'https://example.com/a?b=c&d=e',
  'snake_case camelCase PascalCase kebab-case SCREAMING_CASE', 'a.b.c', '...', '!!!???', '--',
  '\u0000nul', 'ctrl\u0001\u001f', 'del\u007f', '\ufffd', 'a\ufffdb', '\ufffd\ufffd', 'é\ufffd',
  'ℌ𝔢𝔩𝔩𝔬', '𝐁𝐨𝐥𝐝', 'Ǆ ǅ ǆ', 'İstanbul', 'ß ẞ', 'ﬀ ﬃ', 'ǰ', 'ΐ', '\u0344', '\u0958', '\uf900',
];

const englishWords = (
  'the of and to in is you that it he was for on are as with his they at be this have from or one ' +
  'had by word but not what all were we when your can said there use an each which she do how ' +
  'their if will up other about out many then them these so some her would make like him into ' +
  'time has look two more write go see number no way could people my than first water been call ' +
  'who oil its now find long down day did get come made may part over new sound take only little ' +
  'work know place year live me back give most very after thing our just name good sentence man ' +
  'think say great where help through much before line right too mean old any same tell boy ' +
  'tokenizer streaming incremental detokenizer kubernetes reconfiguration antidisestablishment'
).split(' ');
const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];
const punctuation = ['.', ',', '!', '?', ';', ':', ' -', ' —', '…', '"', "'", '(', ')'];
const hanzi = chars('的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自' +
  '之年过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前' +
  '开但因只从想实日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高间由问很最重并物手应' +
  '战向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信表化老给世位次度门任常先海通教儿原东声');
const hiragana = chars('あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん');
const katakana = chars('アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲン');
const kanji = chars('日本語漢字東京大阪時間今年学生先生会社電話');
const arabic = chars('ابتثجحخدذرزسشصضطظعغفقكلمنهوي');
const arabicMarks = ['\u064e', '\u064f', '\u0650', '\u0651', '\u0652'];
const cyrillic = chars('абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗ');
const greek = chars('αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΩάέήίόύώ');
const devanagari = chars('कखगघङचछजझञटठडढणतथदधनपफबभमयरलवशषसह') ;
const devanagariSigns = ['\u093e', '\u093f', '\u0940', '\u0941', '\u0947', '\u094d', '\u0902'];
const thai = chars('กขคงจฉชซญดตถทนบปผพฟภมยรลวศษสหอฮะาิีึืุูเแโใไ่้๊๋');
const emoji = chars('😀😂🥲😍🤔🙃😴🥳😎🤖👻💩🙈🐱🐶🦊🌍🔥✨🎉🍕☕🚀⚽🎵📚💡🔑⏰');
const skinTones = ['\u{1f3fb}', '\u{1f3fc}', '\u{1f3fd}', '\u{1f3fe}', '\u{1f3ff}'];
const zwjSequences = ['👨‍💻', '👩‍🔬', '🧑‍🤝‍🧑', '👨‍👩‍👦', '🏳️‍⚧️', '🐕‍🦺', '❤️‍🔥', '😶‍🌫️', '👁️‍🗨️'];
const flags = ['🇺🇸', '🇯🇵', '🇨🇳', '🇧🇷', '🇮🇳', '🇺🇦', '🏴󠁧󠁢󠁳󠁣󠁴󠁿'];
const whitespace = [' ', ' ', ' ', '\t', '\n', '\n', '\r', '\r\n', '\u00a0', '\u3000', '\u2028',
  '\u2009', '\u200b', '\u0085', '\u000b', '\u000c', '\u180e', '\u2003'];
const combining = ['\u0300', '\u0301', '\u0302', '\u0303', '\u0308', '\u030a', '\u0327', '\u0328',
  '\u0323', '\u0331', '\u20dd'];
const addedTokens = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|object_ref_start|>',
  '<|box_start|>', '<|quad_end|>', '<|vision_pad|>', '<tool_call>', '</tool_call>',
  '<|fim_prefix|>', '<|fim_middle|>', '<|fim_suffix|>', '<|fim_pad|>', '<|repo_name|>',
  '<|file_sep|>', '<tool_response>', '</tool_response>', '<think>', '</think>'];
const nearMisses = ['<|im_start', '<|im_end', 'im_end|>', '<|', '|>', '<think', 'think>', '</think',
  '<|endoftext', '<tool_', '< |im_start|>'];
// Blocks assigned long before Unicode 14, so every library here agrees on their properties.
const blocks = [[0x00a1, 0x024f], [0x0250, 0x02ff], [0x0370, 0x03ff], [0x0400, 0x04ff],
  [0x0530, 0x058f], [0x0590, 0x05ff], [0x0600, 0x06ff], [0x0900, 0x097f], [0x0e00, 0x0e5b],
  [0x10a0, 0x10ff], [0x1e00, 0x1eff], [0x1f00, 0x1ffe], [0x2000, 0x206f], [0x2070, 0x209c],
  [0x20a0, 0x20bf], [0x2100, 0x214f], [0x2190, 0x23ff], [0x2500, 0x27bf], [0x3000, 0x303f],
  [0x3040, 0x30ff], [0x3130, 0x318e], [0x4e00, 0x9fa5], [0xac00, 0xd7a3], [0xf900, 0xfa2d],
  [0xfb00, 0xfb4f], [0xff01, 0xffee], [0x1d400, 0x1d4ff], [0x1f300, 0x1f5ff], [0x1f600, 0x1f64f],
  [0x20000, 0x2a6d6]];
const codeLines = [
  'for (int i = 0; i < n; ++i) {', '  sum += values[i] * 2;', '}', 'def main(argv):',
  '    print(f"{name!r}: {value:>10.3f}")', 'return {"ok": true, "error": null};',
  '#include <vector>', 'std::vector<int32_t> ids;', 'SELECT id, name FROM users WHERE age >= 18;',
  'const x = a ?? b?.c ?? 0;', 'fn add(a: u32, b: u32) -> u32 { a + b }', '// TODO(someone): fix',
  '/* block */', 'x = [1, 2, 3][::-1]', 'if err != nil {', '\treturn nil, err', '<div class="a">',
  '$ ls -la | grep "\\.cpp$"', 'λx. x + 1', '0x7fff_ffff', '1e-9', 'a:=b', 'i++', '--flag=value',
];

function englishSentence() {
  let words = [];
  for (let count = 1 + int(15); count > 0; --count) {
    let word = pick(englishWords);
    const style = int(10);
    if (style === 0) word = word.toUpperCase();
    else if (style === 1) word = word[0].toUpperCase() + word.slice(1);
    if (int(6) === 0) word += pick(contractions).toUpperCase().slice(0, 1 + int(3));
    if (int(5) === 0) word += pick(punctuation);
    words.push(word);
  }
  return words.join(int(8) === 0 ? '  ' : ' ');
}
const runOf = (pool, n) => repeat(n, () => pick(pool));
function randomCodePoint() {
  const [lo, hi] = pick(blocks);
  return String.fromCodePoint(lo + int(hi - lo + 1));
}
const number = () => repeat(1 + int(12), () => String(int(10)));

const generators = {
  english: englishSentence,
  contractions: () => repeat(1 + int(6), () => pick(['', ' ']) + pick(englishWords) +
      pick(contractions).split('').map((c) => (int(2) ? c.toUpperCase() : c)).join('')),
  chinese: () => runOf(hanzi, 1 + int(40)) + pick(['', '，', '。', '！', ' ', '\n']) + runOf(hanzi, int(20)),
  japanese: () => repeat(1 + int(8), () => runOf(pick([hiragana, katakana, kanji]), 1 + int(6))) +
      pick(['', '。', '、', 'か\u3099', 'ハ\u309a', 'ガ']),
  korean: () => repeat(1 + int(6), () => randomCodePointIn(0xac00, 0xd7a3) +
      pick(['', ' ', '\u1100\u1161', '\u11a8'])),
  arabic: () => repeat(1 + int(6), () => runOf(arabic, 1 + int(7)) + (int(3) ? '' : pick(arabicMarks)) + ' '),
  cyrillicGreek: () => repeat(1 + int(8), () => runOf(pick([cyrillic, greek]), 1 + int(9)) + pick([' ', ', ', '. '])),
  devanagariThai: () => repeat(1 + int(8), () => pick(devanagari) + pick(devanagariSigns) + runOf(thai, int(4))),
  emoji: () => repeat(1 + int(8), () => pick([
    () => pick(emoji), () => pick(emoji) + pick(skinTones), () => pick(zwjSequences),
    () => pick(flags), () => pick(englishWords) + ' ', () => '👋' + pick(skinTones) + '\u200d',
    () => pick(['1', '#', '*']) + '\ufe0f\u20e3', () => pick(emoji) + '\ufe0f'])()),
  code: () => repeat(1 + int(6), () => ' '.repeat(int(3) * 4) + (int(4) ? '' : '\t') + pick(codeLines) + '\n'),
  whitespace: () => repeat(1 + int(6), () => runOf(whitespace, int(6)) + (int(2) ? pick(englishWords) : '')),
  numbers: () => repeat(1 + int(5), () => pick([number, () => number() + '.' + number(),
    () => '$' + number(), () => number() + pick(englishWords), () => pick(englishWords) + number(),
    () => number() + ',' + number() + ',' + number(), () => '-' + number() + 'e' + int(40)])() + ' '),
  addedTokens: () => repeat(1 + int(6), () => pick([() => pick(addedTokens), () => pick(nearMisses),
    englishSentence, () => runOf(whitespace, int(3)), () => runOf(hanzi, 1 + int(3))])()),
  decomposed: () => repeat(1 + int(10), () => pick(chars('aeiouAEIOUnczsy')) +
      runOf(combining, int(3)) + (int(4) ? '' : ' ')),
  unicode: () => repeat(1 + int(30), randomCodePoint),
  replacement: () => repeat(1 + int(5), () => pick([englishSentence, () => runOf(hanzi, 2),
    () => pick(emoji), () => ' ']) () + '\ufffd'.repeat(1 + int(2))),
  mixed: () => repeat(1 + int(10), () => pick(Object.values(simpleGenerators))()),
};
function randomCodePointIn(lo, hi) { return String.fromCodePoint(lo + int(hi - lo + 1)); }
const simpleGenerators = { english: englishSentence, number, unicode: randomCodePoint,
  hanzi: () => runOf(hanzi, 3), emoji: () => pick(emoji), space: () => pick(whitespace),
  token: () => pick(addedTokens) };

const counts = { english: 300, contractions: 120, chinese: 150, japanese: 120, korean: 80,
  arabic: 80, cyrillicGreek: 80, devanagariThai: 80, emoji: 150, code: 150, whitespace: 200,
  numbers: 120, addedTokens: 150, decomposed: 120, unicode: 200, replacement: 100, mixed: 200 };
const strings = [...seeds];
for (const [kind, count] of Object.entries(counts)) {
  for (let n = 0; n < count; ++n) strings.push(generators[kind]());
}
// Very long words: the BPE's long path, the regex over long runs.
const longWords = [
  'a'.repeat(10000), ' '.repeat(10000), '\n'.repeat(5000), '1'.repeat(10000), '中'.repeat(5000),
  '😀'.repeat(3000), repeat(10000, () => pick(chars('abcdefghijklmnopqrstuvwxyz'))),
  repeat(10000, () => pick(chars('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'))),
  repeat(3000, () => pick(hanzi)), repeat(2000, randomCodePoint), repeat(3000, () => pick(emoji)),
  'x' + ' '.repeat(9999) + 'y', repeat(5000, () => pick(['ab', 'ba', 'aa'])),
];
strings.push(...longWords);

// Random ids, some runs of the byte tokens that spell multi-byte characters and some added tokens.
const idSequences = [];
for (let n = 0; n < 400; ++n) {
  idSequences.push(Array.from({ length: 1 + int(40) }, () =>
      int(10) === 0 ? vocabSize - 1 - int(26) : int(10) === 0 ? 128 + int(128) : int(vocabSize)));
}

writeFileSync(outPath, JSON.stringify({ strings, id_sequences: idSequences }));
console.log(`make_corpus: ${strings.length} strings, ${idSequences.length} id sequences`);
