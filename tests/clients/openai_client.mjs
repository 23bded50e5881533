// Drives the coordinator's HTTP API with the official `openai` npm package: the model list, a
// completion, a streamed completion with usage, and an unknown model. Prints one JSON line with
// what it saw; tests/unit/test_http_clients.cpp checks it.
// Usage: node openai_client.mjs BASE_URL MODEL API_KEY
import OpenAI from 'openai';

const [baseURL, model, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });

const models = await client.models.list();
const completion = await client.completions.create({
  model, prompt: 'hello world', max_tokens: 8, temperature: 0, seed: 1,
});

const stream = await client.completions.create({
  model, prompt: 'stream me', max_tokens: 6, stream: true,
  stream_options: { include_usage: true },
});
let streamText = '';
let streamFinish = null;
let streamUsage = null;
let numChunks = 0;
for await (const chunk of stream) {
  numChunks += 1;
  if (chunk.choices.length > 0) {
    streamText += chunk.choices[0].text;
    if (chunk.choices[0].finish_reason) streamFinish = chunk.choices[0].finish_reason;
  }
  if (chunk.usage) streamUsage = chunk.usage;
}

let unknownModel = null;
try {
  await client.completions.create({ model: 'no-such-model', prompt: 'x' });
} catch (err) {
  unknownModel = { status: err.status, code: err.code, message: err.message };
}

console.log(JSON.stringify({
  models: models.data.map((m) => m.id),
  text: completion.choices[0].text,
  finish_reason: completion.choices[0].finish_reason,
  usage: completion.usage,
  stream_text: streamText,
  stream_finish: streamFinish,
  stream_usage: streamUsage,
  num_chunks: numChunks,
  unknown_model: unknownModel,
}));
