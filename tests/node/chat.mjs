// Usage: node chat.mjs BASE_URL API_KEY [MODEL]
// One non-streamed and one streamed chat completion with the official openai
// package; prints what came back as one JSON object on stdout.
import OpenAI from "openai";

const [baseURL, apiKey, model = "test-model"] = process.argv.slice(2);
if (!baseURL || !apiKey) {
  console.error("usage: node chat.mjs BASE_URL API_KEY [MODEL]");
  process.exit(2);
}

const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20_000 });
const messages = [{ role: "user", content: "Hello from Node!" }];

const completion = await client.chat.completions.create({ model, messages, max_tokens: 64 });

const stream = await client.chat.completions.create({
  model,
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
const pieces = [];
const streamModels = new Set();
let streamUsage = null;
for await (const chunk of stream) {
  streamModels.add(chunk.model);
  const delta = chunk.choices[0]?.delta?.content;
  if (delta) pieces.push(delta);
  if (chunk.usage) streamUsage = chunk.usage;
}

let authError = null;
try {
  await new OpenAI({ baseURL, apiKey: "bapi_not_a_valid_key", maxRetries: 0 }).chat.completions.create({
    model,
    messages,
  });
} catch (error) {
  authError = { status: error.status, type: error.type ?? error.error?.type, code: error.code };
}

console.log(
  JSON.stringify({
    completion: {
      model: completion.model,
      content: completion.choices[0].message.content,
      finish_reason: completion.choices[0].finish_reason,
      usage: completion.usage,
    },
    stream: {
      models: [...streamModels],
      content: pieces.join(""),
      pieces: pieces.length,
      usage: streamUsage,
    },
    auth_error: authError,
  }),
);
