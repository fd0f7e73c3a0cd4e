// A small "browser" for the login and consent pages of the ezForge authorization server: it
// keeps cookies, GETs pages, parses their <form>s, posts them back with every hidden input (the
// CSRF token and the flow `request`), follows redirects that stay on the server, and finally
// follows the redirect that leaves for the client's loopback redirect URI, as a person's
// browser would. Only plain HTTP forms: the pages have no JavaScript.

const ENTITIES = { amp: "&", quot: '"', apos: "'", lt: "<", gt: ">", nbsp: "\u00a0" };

export function unescapeHtml(s) {
  return s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e) => {
    if (e[0] === "#") {
      const n = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(n) ? String.fromCodePoint(n) : m;
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

function attrs(tag) {
  const out = {};
  const re = /([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  const inner = tag.replace(/^<\s*[a-zA-Z]+/, "").replace(/\/?>$/, "");
  let m;
  while ((m = re.exec(inner))) {
    out[m[1].toLowerCase()] = unescapeHtml(m[2] ?? m[3] ?? m[4] ?? "");
  }
  return out;
}

/** Every <form> of a page: {method, action, inputs: [{name, value, type}], buttons: [{name, value}]}. */
export function parseForms(html) {
  const forms = [];
  const formRe = /<form\b[^>]*>([\s\S]*?)<\/form>/gi;
  let f;
  while ((f = formRe.exec(html))) {
    const open = f[0].match(/^<form\b[^>]*>/i)[0];
    const a = attrs(open);
    const form = {
      method: (a.method || "get").toLowerCase(),
      action: a.action,
      inputs: [],
      buttons: [],
    };
    const body = f[1];
    for (const m of body.matchAll(/<input\b[^>]*>/gi)) {
      const i = attrs(m[0]);
      if (!i.name) continue;
      const type = (i.type || "text").toLowerCase();
      if (type === "submit") form.buttons.push({ name: i.name, value: i.value ?? "" });
      else form.inputs.push({ name: i.name, value: i.value ?? "", type });
    }
    for (const m of body.matchAll(/<button\b[^>]*>/gi)) {
      const b = attrs(m[0]);
      if (b.name) form.buttons.push({ name: b.name, value: b.value ?? "" });
    }
    forms.push(form);
  }
  return forms;
}

export class Browser {
  /**
   * @param {string} origin the authorization server's origin (pages there are "on the server")
   * @param {{email: string, password: string}} person who signs in
   */
  constructor(origin, person) {
    this.origin = new URL(origin).origin;
    this.person = person;
    this.cookies = new Map();
    /** Every page seen, for reports: [{method, url, status}]. */
    this.log = [];
    this.logins = 0;
    this.consents = 0;
  }

  cookieHeader() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  keepCookies(res) {
    for (const c of res.headers.getSetCookie?.() ?? []) {
      const [pair, ...attrsList] = c.split(";");
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrsList.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a));
      if (expired || value === "") this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async request(method, url, form) {
    const onServer = new URL(url).origin === this.origin;
    const headers = { accept: "text/html,application/xhtml+xml" };
    if (onServer && this.cookies.size) headers.cookie = this.cookieHeader();
    let body;
    if (form) {
      headers["content-type"] = "application/x-www-form-urlencoded";
      headers.origin = this.origin;
      body = new URLSearchParams(form).toString();
    }
    const res = await fetch(url, { method, headers, body, redirect: "manual" });
    if (onServer) this.keepCookies(res);
    const text = await res.text();
    this.log.push({ method, url, status: res.status });
    return { url, status: res.status, headers: res.headers, body: text };
  }

  /**
   * Opens an authorization URL and acts as the person: signs in when asked, approves (or
   * `decision`s) the consent page, and follows the final redirect to the client's redirect URI.
   * Returns the URL the browser ended up at (the redirect URI with code, state, iss) and what
   * the page there answered.
   */
  async authorize(authorizationUrl, { decision = "approve" } = {}) {
    let page = await this.request("GET", authorizationUrl);
    for (let hop = 0; hop < 12; hop++) {
      if (page.status >= 300 && page.status < 400) {
        const next = new URL(page.headers.get("location"), page.url).toString();
        if (new URL(next).origin === this.origin) {
          page = await this.request("GET", next);
          continue;
        }
        // Leaving the server: the client's redirect URI. A browser goes there.
        const landed = await this.request("GET", next);
        return { redirectedTo: next, landed };
      }
      if (page.status !== 200) {
        throw new Error(`authorization stopped at ${page.status} ${page.url}: ${page.body.slice(0, 800)}`);
      }
      const forms = parseForms(page.body).filter((f) => f.method === "post");
      const login = forms.find((f) => f.inputs.some((i) => i.name === "password"));
      const consent = forms.find((f) => f.buttons.some((b) => b.name === "decision"));
      const form = login ?? consent;
      if (!form) throw new Error(`no login or consent form at ${page.url}: ${page.body.slice(0, 800)}`);
      const fields = form.inputs
        .filter((i) => !["checkbox", "radio"].includes(i.type))
        .map((i) => [i.name, i.value]);
      if (!fields.some(([k, v]) => k === "csrf" && v)) {
        throw new Error(`the form at ${page.url} carries no CSRF token`);
      }
      if (login) {
        if (++this.logins > 3) throw new Error(`login refused at ${page.url}: ${page.body.slice(0, 800)}`);
        const set = (k, v) => {
          const i = fields.findIndex(([n]) => n === k);
          if (i >= 0) fields[i][1] = v;
          else fields.push([k, v]);
        };
        set("email", this.person.email);
        set("password", this.person.password);
      } else {
        this.consents++;
        if (!form.buttons.some((b) => b.name === "decision" && b.value === decision)) {
          throw new Error(`no ${decision} button at ${page.url}`);
        }
        fields.push(["decision", decision]);
      }
      const action = new URL(form.action ?? page.url, page.url).toString();
      page = await this.request("POST", action, fields);
    }
    throw new Error("too many hops in the authorization flow");
  }
}

/** A loopback HTTP server standing for the client's redirect URI: resolves each /callback hit. */
export async function startCallbackServer() {
  const http = await import("node:http");
  const waiters = [];
  const hits = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, `http://${req.headers.host}`);
    if (url.pathname !== "/callback") {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" }).end("Signed in. You can close this page.");
    const params = Object.fromEntries(url.searchParams);
    const all = {};
    for (const k of url.searchParams.keys()) all[k] = url.searchParams.getAll(k);
    const hit = { params, all, url: url.toString() };
    const w = waiters.shift();
    if (w) w(hit);
    else hits.push(hit);
  });
  await new Promise((resolve) => server.listen({ port: 0, host: "127.0.0.1" }, resolve));
  const { port } = server.address();
  return {
    redirectUri: `http://127.0.0.1:${port}/callback`,
    next: () => (hits.length ? Promise.resolve(hits.shift()) : new Promise((r) => waiters.push(r))),
    close: () => server.close(),
  };
}
