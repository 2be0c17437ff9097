// A deliberately slow OpenAI-compatible model server for the no-buffering test: it streams
// TOKENS pieces DELAY_MS apart, then a code block, in llama-server's recorded chunk format
// (../shared/fixtures/llama-server/stream-plain.sse).
import http from "node:http";

const port = Number(process.env.PORT ?? 18090);
const tokens = Number(process.env.TOKENS ?? 20);
const delayMs = Number(process.env.DELAY_MS ?? 100);
const chunk = (delta, finish = null) =>
  `data: ${JSON.stringify({ choices: [{ finish_reason: finish, index: 0, delta }], created: 1795487765, id: "chatcmpl-slow", model: "slow", system_fingerprint: "b1-0c1e570", object: "chat.completion.chunk" })}\n\n`;

http.createServer((req, res) => {
  if (req.url === "/health") return res.end('{"status":"ok"}');
  if (req.url === "/v1/models") return res.end(JSON.stringify({ object: "list", data: [{ id: "slow", object: "model", meta: { n_ctx: 4096 } }] }));
  req.resume();
  res.writeHead(200, { "Content-Type": "text/event-stream", "X-Accel-Buffering": "no" });
  res.write(chunk({ role: "assistant", content: null }));
  let sent = 0;
  const timer = setInterval(() => {
    if (sent < tokens) {
      res.write(chunk({ content: ` word${sent}` }));
      sent += 1;
      return;
    }
    clearInterval(timer);
    // A code block at the end, for the copy buttons' test.
    res.write(chunk({ content: "\n\n```js\nconst answer = 42; // <ok>\n```\n" }));
    res.write(chunk({}, "stop"));
    res.end("data: [DONE]\n\n");
  }, delayMs);
  res.on("close", () => clearInterval(timer));
}).listen(port, "127.0.0.1");
