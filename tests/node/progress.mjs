// The official Node SDK (openai, pinned in package.json) reading x_codex.progress answers.
//
// Usage: node tests/node/progress.mjs <base_url>   (base_url ends with /v1)
//
// Against a trio_codex server backed by tests/support/fake_codex.py (mode=progress): streams a
// Responses answer and a chat completion with progress on and prints what the SDK returned as
// one JSON object; tests/system/test_progress_sdk.py asserts on it. Any exception the SDK
// raises fails the script with a non-zero exit.
import OpenAI from "openai";

const baseURL = process.argv[2];
const client = new OpenAI({ baseURL, apiKey: "sk-node", maxRetries: 0, timeout: 20000 });
const out = {};

const stream = client.responses.stream({
  model: "gpt-test",
  input: "[[codex:mode=progress;reply=done]]",
  x_codex: { progress: true },
});
const types = [];
for await (const event of stream) types.push(event.type);
const final = await stream.finalResponse();
out.responses = {
  status: final.status,
  types,
  output_text: final.output_text,
  summaries: final.output
    .filter((item) => item.type === "reasoning")
    .map((item) => item.summary.map((part) => part.text).join("")),
};

const chat = await client.chat.completions.create({
  model: "gpt-test",
  messages: [{ role: "user", content: "[[codex:mode=progress;reply=done]]" }],
  stream: true,
  x_codex: { progress: true },
});
let reasoning = "";
let content = "";
for await (const chunk of chat) {
  for (const choice of chunk.choices) {
    reasoning += choice.delta.reasoning_content ?? "";
    content += choice.delta.content ?? "";
  }
}
out.chat = { reasoning, content };

console.log(JSON.stringify(out));
