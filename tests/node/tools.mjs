// The official Node SDK (openai, pinned in package.json) running function-calling loops.
//
// Usage: node tests/node/tools.mjs <base_url>   (base_url ends with /v1)
//
// Runs against a trio_codex server (CODEX_BACKEND=app-server) whose Codex talks to the fake
// upstream, which calls the client's tools when the prompt says [[fake:call_tool=...]] and
// answers "Tool finished. Output: ..." once the tool outputs are in. Prints one JSON object;
// tests/system/test_tools_node_realcodex.py asserts on it. Any exception the SDK raises (a
// stream it rejects, a bad shape) fails the script with a non-zero exit.
import OpenAI from "openai";

const baseURL = process.argv[2];
if (!baseURL) {
  console.error("usage: node tools.mjs <base_url>");
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey: "sk-node", maxRetries: 0, timeout: 60000 });
const ASK = "Weather? [[fake:call_tool=get_weather,get_time]]";
const model = "fake-model";

const responsesTools = [
  {
    type: "function",
    name: "get_weather",
    description: "Weather.",
    parameters: { type: "object", properties: { city: { type: "string" } } },
    strict: false,
  },
  {
    type: "function",
    name: "get_time",
    parameters: { type: "object", properties: {} },
    strict: false,
  },
];

function outputsFor(response) {
  return response.output
    .filter((item) => item.type === "function_call")
    .map((call) => ({
      type: "function_call_output",
      call_id: call.call_id,
      output: `${call.name} done`,
    }));
}

const out = {};

// Responses, create: the calls, then the outputs with previous_response_id.
const first = await client.responses.create({ model, input: ASK, tools: responsesTools });
const second = await client.responses.create({
  model,
  previous_response_id: first.id,
  input: outputsFor(first),
  tools: responsesTools,
});
out.responses_create = {
  status: first.status,
  calls: first.output.filter((i) => i.type === "function_call").map((i) => i.name),
  output_text: second.output_text,
};

// Responses, the stream() helper: finalResponse() has the calls; then a streamed follow-up.
const stream = client.responses.stream({ model, input: ASK, tools: responsesTools });
const types = [];
for await (const event of stream) types.push(event.type);
const streamed = await stream.finalResponse();
const followUp = client.responses.stream({
  model,
  previous_response_id: streamed.id,
  input: outputsFor(streamed),
  tools: responsesTools,
});
for await (const _ of followUp) {
  // drain
}
const streamedFinal = await followUp.finalResponse();
out.responses_stream = {
  status: streamed.status,
  types,
  calls: streamed.output.filter((i) => i.type === "function_call").map((i) => i.name),
  output_text: streamedFinal.output_text,
};

// Chat completions, create: the loop by hand.
const chatTools = responsesTools.map((t) => ({
  type: "function",
  function: { name: t.name, description: t.description ?? "", parameters: t.parameters },
}));
const messages = [{ role: "user", content: ASK }];
const chat1 = await client.chat.completions.create({ model, messages, tools: chatTools });
const message = chat1.choices[0].message;
const results = message.tool_calls.map((call) => ({
  role: "tool",
  tool_call_id: call.id,
  content: `${call.function.name} done`,
}));
const chat2 = await client.chat.completions.create({
  model,
  messages: [...messages, message, ...results],
  tools: chatTools,
});
out.chat_create = {
  finish_reason: chat1.choices[0].finish_reason,
  calls: message.tool_calls.map((c) => c.function.name),
  content: chat2.choices[0].message.content,
};

// Chat completions, runTools: the SDK runs the functions and the loop itself.
const ran = [];
const runner = client.chat.completions.runTools({
  model,
  messages: [{ role: "user", content: ASK }],
  tools: responsesTools.map((t) => ({
    type: "function",
    function: {
      name: t.name,
      parameters: t.parameters,
      parse: JSON.parse,
      function: (args) => {
        ran.push(t.name);
        return `${t.name} ran with ${JSON.stringify(args)}`;
      },
    },
  })),
});
out.run_tools = { content: await runner.finalContent(), ran: ran.sort() };

console.log(JSON.stringify(out));
