// The Vercel AI SDK's own tool loop against trio_codex (CODEX_BACKEND=app-server): generateText
// and streamText with a tool that has an `execute`, toolChoice "required" on the first step, and
// stopWhen stepCountIs(3), on its default Responses model and on its chat model.
//
// Usage: node tests/clients/node/tools.mjs <base_url>   (base_url ends with /v1)
//
// The server's Codex talks to the fake upstream, which calls the client's tool when the prompt
// says [[fake:call_tool=get_weather]] and answers "Tool finished. Output: ..." once the tool's
// output is in. Prints one JSON object; tests/system/test_clients.py asserts on it. Any
// exception fails the script (non-zero exit).
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";

const baseURL = process.argv[2];
if (!baseURL) {
  console.error("usage: node tools.mjs <base_url>");
  process.exit(2);
}
const provider = createOpenAI({ baseURL, apiKey: "sk-vercel" });
const ran = [];
const tools = {
  get_weather: tool({
    description: "Weather in a city.",
    inputSchema: jsonSchema({
      type: "object",
      properties: { city: { type: "string" } },
      additionalProperties: false,
    }),
    execute: async (input) => {
      ran.push(input);
      return `sunny in ${input.city ?? "nowhere"}`;
    },
  }),
};
const options = (model, label) => ({
  model,
  tools,
  prompt: `Weather for ${label}? [[fake:call_tool=get_weather]]`,
  stopWhen: stepCountIs(3),
  prepareStep: ({ stepNumber }) => (stepNumber === 0 ? { toolChoice: "required" } : {}),
  maxRetries: 0,
});

const out = {};
for (const [name, model] of [
  ["responses", provider("fake-model")],
  ["chat", provider.chat("fake-model")],
]) {
  const result = await generateText(options(model, name));
  out[name] = {
    steps: result.steps.length,
    calls: result.steps.flatMap((s) => s.toolCalls.map((c) => c.toolName)),
    text: result.text,
  };
  const streamed = streamText(options(model, `${name} streamed`));
  let text = "";
  for await (const part of streamed.textStream) text += part;
  out[`${name}_stream`] = {
    steps: (await streamed.steps).length,
    calls: (await streamed.steps).flatMap((s) => s.toolCalls.map((c) => c.toolName)),
    text,
  };
}
out.ran = ran.length;
console.log(JSON.stringify(out));
