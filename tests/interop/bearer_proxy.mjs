// A forwarding proxy that adds `Authorization: Bearer <token>` to every request and streams
// everything else through unchanged (Host and Origin included), so that a tool that has no way to
// send a token (the conformance suite's `server` mode) can test an MCP server behind the ezForge
// front door. Listens on 127.0.0.1 (port from PORT, 0 = any) and prints `INTEROP_LISTENING <port>`.
//
// Usage: node bearer_proxy.mjs <target-origin>   Env: BEARER_TOKEN, PORT.

import http from "node:http";

const target = new URL(process.argv[2]);
const token = process.env.BEARER_TOKEN;
if (!token) {
  console.error("BEARER_TOKEN is not set");
  process.exit(2);
}

const server = http.createServer((req, res) => {
  const headers = { ...req.headers, authorization: `Bearer ${token}` };
  const upstream = http.request(
    { host: target.hostname, port: target.port, method: req.method, path: req.url, headers, setHost: false },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.rawHeaders);
      up.pipe(res);
    },
  );
  upstream.on("error", (e) => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
    res.end(`proxy: ${e.message}`);
  });
  req.pipe(upstream);
  res.on("close", () => upstream.destroy());
});
server.listen({ port: Number(process.env.PORT ?? 0), host: "127.0.0.1" }, () => {
  process.stderr.write(`INTEROP_LISTENING ${server.address().port}\n`);
});
