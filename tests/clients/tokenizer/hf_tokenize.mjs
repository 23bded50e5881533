// Hugging Face's answers for a corpus (make_corpus.mjs): the ids of each string (with special
// tokens added), the decode of those ids, and the decode of each random id sequence with and
// without special tokens; plus the time of one encodeBatch of the whole corpus on one thread
// (TOKENIZERS_PARALLELISM=false) and of loading tokenizer.json, for bench/bench_tokenizer.cpp.
//
// usage: node hf_tokenize.mjs TOKENIZER.json CORPUS.json OUT.json
import { readFileSync, writeFileSync } from 'node:fs';
process.env.TOKENIZERS_PARALLELISM = 'false';  // before the native library reads it
const { Tokenizer } = await import('tokenizers');

const [tokenizerPath, corpusPath, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error('usage: node hf_tokenize.mjs TOKENIZER.json CORPUS.json OUT.json');
  process.exit(2);
}
const loadStart = process.hrtime.bigint();
const tokenizer = Tokenizer.fromFile(tokenizerPath);
const loadSeconds = Number(process.hrtime.bigint() - loadStart) / 1e9;
const corpus = JSON.parse(readFileSync(corpusPath, 'utf8'));

const ids = [];
const decoded = [];
for (const text of corpus.strings) {
  const encoding = await tokenizer.encode(text, null, { addSpecialTokens: true });
  const textIds = Array.from(encoding.getIds());
  ids.push(textIds);
  decoded.push(await tokenizer.decode(textIds, false));
}
const idDecodes = [];
const idDecodesSkipSpecial = [];
for (const sequence of corpus.id_sequences) {
  idDecodes.push(await tokenizer.decode(sequence, false));
  idDecodesSkipSpecial.push(await tokenizer.decode(sequence, true));
}

// Timing: the whole corpus in one batch (no per-call overhead of the binding), best of 3.
let bestSeconds = Infinity;
for (let round = 0; round < 3; ++round) {
  const start = process.hrtime.bigint();
  await tokenizer.encodeBatch(corpus.strings, { addSpecialTokens: true });
  bestSeconds = Math.min(bestSeconds, Number(process.hrtime.bigint() - start) / 1e9);
}
const numBytes = corpus.strings.reduce((sum, text) => sum + Buffer.byteLength(text, 'utf8'), 0);

writeFileSync(outPath, JSON.stringify({
  ids, decoded, id_decodes: idDecodes, id_decodes_skip_special: idDecodesSkipSpecial,
  encode_batch_seconds: bestSeconds, num_bytes: numBytes, load_seconds: loadSeconds,
}));
console.log(`hf_tokenize: ${ids.length} strings, ${numBytes} bytes, encodeBatch ${bestSeconds.toFixed(4)} s`);
