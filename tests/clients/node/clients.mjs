// The Node recipes of docs/clients.md, run for real: the OpenAI Node SDK (Chat Completions,
// plain and streamed) and the Vercel AI SDK (its default Responses model and its chat model,
// plain and streamed).
//
// Usage: node tests/clients/node/clients.mjs <base_url>   (base_url ends with /v1)
//
// Prints one JSON object with what each client returned; tests/system/test_clients.py asserts
// on it against the fake upstream's replies. Any exception fails the script (non-zero exit).
import OpenAI from "openai";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";

const baseURL = process.argv[2];
if (!baseURL) {
  console.error("usage: node clients.mjs <base_url>");
  process.exit(2);
}
const out = {};

// --- recipe: the OpenAI Node SDK
const client = new OpenAI({ baseURL, apiKey: "sk-node", maxRetries: 0, timeout: 60000 });
const completion = await client.chat.completions.create({
  model: "fake-model",
  messages: [{ role: "user", content: "Hi [[fake:reply=Node chat]]" }],
});
out.nodeChat = completion.choices[0].message.content;
const stream = await client.chat.completions.create({
  model: "fake-model",
  messages: [{ role: "user", content: "Hi [[fake:reply=Node streamed;chunks=3]]" }],
  stream: true,
});
out.nodeStream = "";
for await (const chunk of stream) out.nodeStream += chunk.choices[0]?.delta?.content ?? "";

// --- recipe: the Vercel AI SDK
const provider = createOpenAI({ baseURL, apiKey: "sk-vercel" });
const viaResponses = await generateText({
  model: provider("fake-model"), // the Responses API
  prompt: "Hi [[fake:reply=Vercel responses]]",
  maxRetries: 0,
});
out.vercelResponses = viaResponses.text;
out.vercelResponsesTokens = viaResponses.usage.totalTokens;
const viaChat = await generateText({
  model: provider.chat("fake-model"), // Chat Completions
  prompt: "Hi [[fake:reply=Vercel chat]]",
  maxRetries: 0,
});
out.vercelChat = viaChat.text;
for (const [name, model] of [
  ["vercelResponsesStream", provider("fake-model")],
  ["vercelChatStream", provider.chat("fake-model")],
]) {
  const streamed = streamText({
    model,
    prompt: `Hi [[fake:reply=${name} text;chunks=3]]`,
    maxRetries: 0,
  });
  out[name] = "";
  for await (const part of streamed.textStream) out[name] += part;
}
console.log(JSON.stringify(out));
