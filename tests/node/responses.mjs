// The official Node SDK (openai, pinned in package.json) as a Responses API client.
//
// Usage: node tests/node/responses.mjs <base_url>   (base_url ends with /v1)
//
// Runs against a trio_codex server backed by tests/support/fake_codex.py and prints one JSON
// object with what the SDK returned; tests/system/test_responses_sdk.py asserts on it. Any
// exception the SDK raises (a stream it rejects, a bad shape) fails the script with a non-zero
// exit.
import OpenAI from "openai";

const baseURL = process.argv[2];
if (!baseURL) {
  console.error("usage: node responses.mjs <base_url>");
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey: "sk-node", maxRetries: 0, timeout: 20000 });

function texts(response) {
  return response.output
    .filter((item) => item.type === "message")
    .flatMap((item) => item.content.map((part) => part.text));
}

const out = {};

const created = await client.responses.create({
  model: "gpt-test",
  instructions: "Be brief.",
  input: [{ role: "user", content: [{ type: "input_text", text: "[[codex:reply=Hello Node]]" }] }],
  metadata: { via: "node" },
});
out.create = {
  id: created.id,
  status: created.status,
  output_text: created.output_text,
  metadata: created.metadata,
  total_tokens: created.usage.total_tokens,
};

const stream = client.responses.stream({
  model: "gpt-test",
  input: "[[codex:mode=reasoning;reply=streamed answer]]",
});
const types = [];
const deltas = [];
for await (const event of stream) {
  types.push(event.type);
  if (event.type === "response.output_text.delta") deltas.push(event.delta);
}
const final = await stream.finalResponse();
out.stream = {
  id: final.id,
  status: final.status,
  types,
  deltas,
  item_types: final.output.map((item) => item.type),
  texts: texts(final),
};

const next = await client.responses.create({
  model: "gpt-test",
  input: "again [[codex:reply=second turn]]",
  previous_response_id: final.id,
});
out.next = { previous_response_id: next.previous_response_id, texts: texts(next) };

const parsed = await client.responses.parse({
  model: "gpt-test",
  input: '[[codex:reply={"name":"Ada","age":36}]]',
  text: {
    format: {
      type: "json_schema",
      name: "Person",
      strict: true,
      schema: {
        type: "object",
        properties: { name: { type: "string" }, age: { type: "integer" } },
        required: ["name", "age"],
        additionalProperties: false,
      },
    },
  },
});
out.parse = { output_parsed: parsed.output_parsed ?? null, texts: texts(parsed) };

try {
  await client.responses.create({
    model: "gpt-test",
    input: "x",
    previous_response_id: "resp_nope",
  });
  out.not_found = null;
} catch (error) {
  out.not_found = { name: error.constructor.name, status: error.status, code: error.code };
}

console.log(JSON.stringify(out));
