// A deliberately slow OpenAI-compatible model server for the end-to-end tests: it streams
// TOKENS pieces DELAY_MS apart (` word0 word1 …`), then a code block, in llama-server's recorded
// chunk format (../shared/fixtures/llama-server/stream-plain.sse).
// - `/v1/models` lists two models ("slow", the default, and "slow-b"), so the app offers a picker;
//   slow's context is 4,096 tokens, slow-b's 640.
// - When the newest user message has the word "think", REASONING pieces of `reasoning_content`
//   ("Step N of my reasoning. ") come first, at the same pace; with "at length", three times
//   TOKENS pieces come.
// - With the word "markdown", the answer is MARKDOWN_ANSWER (a heading, a paragraph with bold,
//   code and math, a list, a table, a code block, displayed math, and raw HTML that must show as
//   text), cut into 3-character pieces, three times as fast.
// - A request for a chat's title (its system message starts "You name conversations") is answered
//   at once (after TITLE_DELAY_MS, 0 by default) with `"Slow Test Title."`.
// - `GET /props` says, like llama-server, whether the model can see images: not unless VISION=1.
// - When the app offers the tool `fetch_url` and the newest user message has the word "tool",
//   the answer is "Let me look that up." and a call of fetch_url for this server's `/page` (in
//   llama-server's recorded tool-call chunks: testkit/fixtures/llama-server-tools/); once the
//   request carries the call's result, the usual slow answer. `/page` answers after PAGE_DELAY_MS
//   (1,500 by default), so that a person sees the call running.
// - `GET /last-request` answers the JSON body of the latest chat completion request that was not
//   for a title (`null` before the first), so that tests can check what the app sent upstream.
import http from "node:http";

const port = Number(process.env.PORT ?? 18090);
const tokens = Number(process.env.TOKENS ?? 20);
const delayMs = Number(process.env.DELAY_MS ?? 100);
const reasoningPieces = Number(process.env.REASONING ?? 5);
const titleDelayMs = Number(process.env.TITLE_DELAY_MS ?? 0);
const vision = process.env.VISION === "1";
const pageDelayMs = Number(process.env.PAGE_DELAY_MS ?? 1500);
const PAGE = "<html><head><title>Opening hours</title><script>window.__pwned = 1</script></head><body>" +
  "<h1>Opening hours</h1><p>The library opens at <b>9:00</b> and closes at 18:00.</p>" +
  "<p>&lt;img src=x onerror=alert(1)&gt; is text here.</p></body></html>";
const TITLE_ANSWER = '"Slow Test Title."';
const models = ["slow", "slow-b"];
// slow-b's context is small, so that a few long messages fill it (the context gauge's test).
const contexts = { slow: 4096, "slow-b": 640 };

const chunk = (delta, finish = null, model = "slow") =>
  `data: ${JSON.stringify({ choices: [{ finish_reason: finish, index: 0, delta }], created: 1795487765, id: "chatcmpl-slow", model, system_fingerprint: "b1-0c1e570", object: "chat.completion.chunk" })}\n\n`;

let lastRequest = null;

const isTitleRequest = (body) => {
  const first = body?.messages?.[0];
  return first?.role === "system" && typeof first.content === "string" && first.content.startsWith("You name conversations");
};

const newestUserText = (body) => {
  const users = (body?.messages ?? []).filter((m) => m.role === "user");
  const newest = users[users.length - 1]?.content;
  return typeof newest === "string" ? newest : "";
};

const MARKDOWN_ANSWER = "# A plan in **three** steps\n\nFirst a paragraph with **bold**, *emphasis*, `code`, " +
  "a [link](https://example.com/docs) and math: $e^{i\\pi} + 1 = 0$. It costs $5 and $10.\n\n" +
  "1. Back up the **database**\n2. Run `migrate --check`\n3. Deploy\n\n" +
  "| Step | Time | Risk |\n|------|------|------|\n| Backup | 5 min | low |\n| Migrate | 20 min | **high** |\n\n" +
  "```rust\nfn main() {\n    println!(\"hello\");\n}\n```\n\n" +
  "$$\\sum_{i=0}^{n} i = \\frac{n(n+1)}{2}$$\n\n" +
  "> A quote with <script>window.__pwned = 1</script> in it.\n\nThe end.\n";
const wantsMarkdown = (body) => /\bmarkdown\b/i.test(newestUserText(body));

const wantsThinking = (body) => /\bthink\b/i.test(newestUserText(body));

// "at length" asks for three times as many pieces: long enough for a second page to attach.
const tokensFor = (body) => (/\bat length\b/i.test(newestUserText(body)) ? tokens * 3 : tokens);

function answerTitle(body, res) {
  const model = body?.model ?? "slow";
  if (body?.stream === false) {
    res.writeHead(200, { "Content-Type": "application/json" });
    return res.end(JSON.stringify({
      choices: [{ finish_reason: "stop", index: 0, message: { role: "assistant", content: TITLE_ANSWER } }],
      created: 1795487765, id: "chatcmpl-slow-title", model, object: "chat.completion",
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
    }));
  }
  res.writeHead(200, { "Content-Type": "text/event-stream", "X-Accel-Buffering": "no" });
  res.write(chunk({ role: "assistant", content: null }, null, model));
  res.write(chunk({ content: TITLE_ANSWER }, null, model));
  res.write(chunk({}, "stop", model));
  res.end("data: [DONE]\n\n");
}

// The app offered fetch_url, the person asked for a tool, and no result has come back yet.
const wantsToolCall = (body) => {
  const offered = (body?.tools ?? []).some((t) => t?.function?.name === "fetch_url");
  const messages = body?.messages ?? [];
  const lastUser = messages.map((m) => m.role).lastIndexOf("user");
  const answered = messages.slice(lastUser + 1).some((m) => m.role === "tool");
  return offered && !answered && /\btool\b/i.test(newestUserText(body));
};

function answerWithToolCall(body, res) {
  const model = body?.model ?? "slow";
  const args = JSON.stringify({ url: `http://127.0.0.1:${port}/page` });
  const pieces = [
    chunk({ content: "Let me look" }, null, model),
    chunk({ content: " that up." }, null, model),
    chunk({ tool_calls: [{ index: 0, id: "slowCall" + Date.now(), type: "function", function: { name: "fetch_url", arguments: args.slice(0, 8) } }] }, null, model),
    chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(8) } }] }, null, model),
    chunk({}, "tool_calls", model),
  ];
  res.writeHead(200, { "Content-Type": "text/event-stream", "X-Accel-Buffering": "no" });
  res.write(chunk({ role: "assistant", content: null }, null, model));
  let sent = 0;
  const timer = setInterval(() => {
    if (sent < pieces.length) {
      res.write(pieces[sent]);
      sent += 1;
      return;
    }
    clearInterval(timer);
    res.end("data: [DONE]\n\n");
  }, delayMs);
  res.on("close", () => clearInterval(timer));
}

function answerSlowly(body, res) {
  const model = body?.model ?? "slow";
  const thinking = wantsThinking(body) ? reasoningPieces : 0;
  const markdown = wantsMarkdown(body) ? MARKDOWN_ANSWER.match(/[\s\S]{1,3}/g) : null;
  const pieces = markdown ? markdown.length : tokensFor(body);
  res.writeHead(200, { "Content-Type": "text/event-stream", "X-Accel-Buffering": "no" });
  res.write(chunk({ role: "assistant", content: null }, null, model));
  let thought = 0;
  let sent = 0;
  const timer = setInterval(() => {
    if (thought < thinking) {
      thought += 1;
      res.write(chunk({ reasoning_content: `Step ${thought} of my reasoning. ` }, null, model));
      return;
    }
    if (sent < pieces) {
      res.write(chunk({ content: markdown ? markdown[sent] : ` word${sent}` }, null, model));
      sent += 1;
      return;
    }
    clearInterval(timer);
    if (markdown) {
      res.write(chunk({}, "stop", model));
      return res.end("data: [DONE]\n\n");
    }
    // A code block at the end, for the copy buttons' test.
    res.write(chunk({ content: "\n\n```js\nconst answer = 42; // <ok>\n```\n" }, null, model));
    res.write(chunk({}, "stop", model));
    res.end("data: [DONE]\n\n");
  }, markdown ? Math.max(10, delayMs / 3) : delayMs);
  res.on("close", () => clearInterval(timer));
}

http.createServer((req, res) => {
  const path = req.url.split("?")[0];
  if (path === "/health") return res.end('{"status":"ok"}');
  if (path === "/v1/models") {
    res.setHeader("Content-Type", "application/json");
    return res.end(JSON.stringify({ object: "list", data: models.map((id) => ({ id, object: "model", meta: { n_ctx: contexts[id] } })) }));
  }
  if (path === "/props") {
    res.setHeader("Content-Type", "application/json");
    return res.end(JSON.stringify({ model_path: "slow.gguf", modalities: { vision, audio: false } }));
  }
  if (path === "/page") {
    return setTimeout(() => {
      res.setHeader("Content-Type", "text/html; charset=utf-8");
      res.end(PAGE);
    }, pageDelayMs);
  }
  if (path === "/last-request") {
    res.setHeader("Content-Type", "application/json");
    return res.end(JSON.stringify(lastRequest));
  }
  // Everything else is a chat completion.
  const parts = [];
  req.on("data", (part) => parts.push(part));
  req.on("end", () => {
    let body = null;
    try {
      body = JSON.parse(Buffer.concat(parts).toString("utf8"));
    } catch {
      // Not JSON: answered like any other request, as before.
    }
    if (isTitleRequest(body)) return setTimeout(() => answerTitle(body, res), titleDelayMs);
    lastRequest = body;
    if (wantsToolCall(body)) return answerWithToolCall(body, res);
    answerSlowly(body, res);
  });
}).listen(port, "127.0.0.1");
