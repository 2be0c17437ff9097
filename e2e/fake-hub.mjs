// A stand-in for the Hugging Face hub (no internet in tests): `HEAD`/`GET
// /{owner}/{repo}/resolve/{revision}/{file}` answers with the hub's headers (`X-Repo-Commit`, the
// sha256 as `X-Linked-Etag`, `X-Linked-Size`) and serves MODEL_FILE at RATE bytes a second,
// honouring `Range: bytes=N-`, so that a first run's download takes a few visible seconds. The
// body waits after its first MiB until `GET /go` (the test says when it watches). `GET
// /api/models/{owner}/{repo}/tree/main` lists the file, as the hub's API does.
import http from "node:http";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const port = Number(process.env.PORT ?? 18095);
const file = process.env.MODEL_FILE;
const rate = Number(process.env.RATE ?? 20_000_000);
const bytes = readFileSync(file);
const sha = createHash("sha256").update(bytes).digest("hex");
const commit = "5b5f1f4bd0a1d0b2c3e4f5a6b7c8d9e0f1a2b3c4";
let go = false;

http.createServer((req, res) => {
  if (req.url === "/health") { res.end("ok"); return; }
  if (req.url === "/go") { go = true; res.end("going"); return; }
  // The hub's API: a repository's files (the operator's download lists them).
  if (/^\/api\/models\/[^/]+\/[^/]+\/tree\/main/.test(req.url)) {
    const name = process.env.LISTED_FILE ?? "model.gguf";
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify([
      { type: "file", path: "README.md", size: 1200 },
      { type: "file", path: name, size: 134, lfs: { size: bytes.length, oid: sha } },
    ]));
    return;
  }
  if (!/^\/[^/]+\/[^/]+\/resolve\/[^/]+\/.+/.test(req.url)) { res.writeHead(404); res.end(); return; }
  const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? "")?.[1] ?? 0);
  const headers = {
    "X-Repo-Commit": commit,
    "X-Linked-Etag": `"${sha}"`,
    "X-Linked-Size": String(bytes.length),
    ETag: `"${sha}"`,
    "Content-Length": String(bytes.length - from),
    "Accept-Ranges": "bytes",
  };
  if (from > 0) headers["Content-Range"] = `bytes ${from}-${bytes.length - 1}/${bytes.length}`;
  res.writeHead(from > 0 ? 206 : 200, headers);
  if (req.method === "HEAD") { res.end(); return; }
  // Paced in 100 ms slices.
  let at = from;
  const slice = Math.max(1, Math.floor(rate / 10));
  const timer = setInterval(() => {
    if (at >= bytes.length || res.destroyed) { clearInterval(timer); res.end(); return; }
    if (!go && at >= 1 << 20) return;
    res.write(bytes.subarray(at, Math.min(at + slice, bytes.length)));
    at += slice;
  }, 100);
  req.on("close", () => clearInterval(timer));
}).listen(port, "127.0.0.1");
