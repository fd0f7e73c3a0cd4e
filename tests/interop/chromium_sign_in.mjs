// A person in a real browser: drives headless Chromium (puppeteer-core) through the ezForge
// sign-in and consent pages. It opens the authorization URL, types the email and password,
// clicks "Sign in", clicks "Allow", and lets the browser follow the redirect to the client.
// Run by tests/api/interop/chromium.rs.
//
// Usage: node chromium_sign_in.mjs AUTHORIZE_URL EMAIL PASSWORD CHROMIUM USER_DATA_DIR
// Prints `RESULT {json}`: each page's status and Referrer-Policy, the headers the browser
// really sent with each request (from the DevTools protocol, as they went on the wire), and
// where it ended. A step that fails is reported in `error`; the Rust test decides.
import puppeteer from "puppeteer-core";

const [authorizeUrl, email, password, executablePath, userDataDir] = process.argv.slice(2);
const issuer = new URL(authorizeUrl).origin;
const result = { pages: [], requests: [] };

const browser = await puppeteer.launch({
  executablePath,
  userDataDir,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // Containers give /dev/shm 64 MiB, too little for a tab on some machines.
    "--disable-dev-shm-usage",
  ],
  timeout: 60_000,
  protocolTimeout: 60_000,
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(60_000);
  // Every hop of every request, with the headers Chromium put on the wire. A redirect keeps
  // its request id; both events come once per hop, in order.
  const hops = new Map();
  const hop = (id) => hops.get(id) ?? (hops.set(id, { sent: [], wire: [] }), hops.get(id));
  const cdp = await page.createCDPSession();
  await cdp.send("Network.enable");
  cdp.on("Network.requestWillBeSent", (e) =>
    hop(e.requestId).sent.push({ method: e.request.method, url: e.request.url }),
  );
  cdp.on("Network.requestWillBeSentExtraInfo", (e) => hop(e.requestId).wire.push(e.headers));

  const seen = async (what, response) => {
    result.pages.push({
      what,
      url: page.url(),
      status: response?.status() ?? null,
      referrerPolicy: response?.headers()["referrer-policy"] ?? null,
      text: (await page.evaluate(() => document.body?.innerText ?? "")).slice(0, 300),
    });
  };
  const submit = (selector) =>
    Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click(selector)]).then(
      ([response]) => response,
    );

  try {
    await seen("sign-in page", await page.goto(authorizeUrl, { waitUntil: "load" }));
    await page.type("input[name=email]", email);
    await page.type("input[name=password]", password);
    await seen("after signing in", await submit("form button[type=submit]"));
    await seen("after allowing", await submit("button[name=decision][value=approve]"));
  } catch (e) {
    result.error = String(e?.stack ?? e);
  }

  for (const { sent, wire } of hops.values()) {
    sent.forEach((s, i) => {
      const h = Object.fromEntries(
        Object.entries(wire[i] ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
      );
      result.requests.push({
        method: s.method,
        url: s.url,
        toIssuer: new URL(s.url).origin === issuer,
        origin: h["origin"] ?? null,
        secFetchSite: h["sec-fetch-site"] ?? null,
        referer: h["referer"] ?? null,
        wireHeadersSeen: wire[i] !== undefined,
      });
    });
  }
} finally {
  await browser.close();
}
console.log(`RESULT ${JSON.stringify(result)}`);
