// Runs the MCP conformance suite's `authorization` scenarios against the ezForge authorization
// server, acting as the person at the browser: when the suite prints the authorization URL and
// waits for its callback, lib/browser.mjs signs in and consents through the real forms and follows
// the redirect to the suite's loopback callback server.
//
// Usage: node conformance_auth.mjs <issuer> <client-id> <resource> <callback-port> <output-dir>
// Env: EZF_EMAIL, EZF_PASSWORD. Exit code: the suite's.

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Browser } from "./lib/browser.mjs";

const [issuer, clientId, resource, port, outputDir] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.join(here, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js");
const args = [cli, "authorization", "--url", issuer, "--client-id", clientId, "--resource", resource, "--port", port, "--output-dir", outputDir];
const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
const browser = new Browser(issuer, { email: process.env.EZF_EMAIL, password: process.env.EZF_PASSWORD });
const drives = [];
// The suite prints the URL, then starts its callback server: drive once both happened.
let pendingUrl;
let callbackUp = false;
function maybeDrive() {
  if (pendingUrl && callbackUp) {
    const url = pendingUrl;
    pendingUrl = undefined;
    callbackUp = false;
    drives.push(
      browser.authorize(url).then(
        ({ redirectedTo, landed }) => console.log(`BROWSER landed on ${new URL(redirectedTo).origin}${new URL(redirectedTo).pathname} (${landed.status})`),
        (e) => console.log(`BROWSER failed: ${e.message}`),
      ),
    );
  }
}
createInterface({ input: child.stdout }).on("line", (line) => {
  console.log(line);
  if (line.startsWith(issuer) && line.includes("/authorize?")) pendingUrl = line.trim();
  if (line.startsWith("Callback server started")) callbackUp = true;
  maybeDrive();
});
child.on("exit", async (code) => {
  await Promise.all(drives);
  console.log(`BROWSER authorizations=${drives.length} logins=${browser.logins} consents=${browser.consents}`);
  process.exit(code ?? 1);
});
