// Browser half of scripts/browser-test.sh (run it through that script: it starts the servers).
//
// Phase "enforce" (wsguard with [origin] mode = "enforce"):
//   0. the page served against the chat backend itself (http://127.0.0.1:8082, ws://, no wsguard)
//      negotiates permessage-deflate with Chromium and chats: the backend side works on its own;
//   1. two tabs on the allowed page (http://localhost:8080) chat through wsguard and the backend,
//      and show a negotiated permessage-deflate with client_no_context_takeover (wsguard's default
//      context_takeover = false); the backend logged their joins with server_no_context_takeover,
//      which wsguard added to the offers it sent on;
//   2. the evil page (http://127.0.0.1:8081) gets no socket: the page shows close 1006, Chromium
//      reports the 403, wsguard logs exactly one `handshake refused` line with
//      rule=origin_not_allowed for that origin, and the chat backend logged no join for it;
//   3. a message over max_message_size typed into the page closes the socket with 1009.
// Phase "report" (wsguard restarted with mode = "report"):
//   4. the evil page connects and chats, and wsguard logs
//      `origin refused (report mode: let through)` for its origin.
// Phase "auth" (enforce, /chat behind [auth.session]: HS256 JWTs from the "session" cookie, leeway 0):
//   5. the allowed page with a valid session cookie connects and chats;
//   6. without the cookie, then with an expired token, the page gets no socket (close 1006, a 401
//      in Chromium's console), and each is one refusal in the log and in /metrics
//      (auth_missing, auth_expired);
//   7. a connected page is closed with 1008 "token expired" when its token's exp passes;
//   8. no token this phase minted appears in wsguard's log.
// Every wait is bounded. Screenshots go to $BROWSER_TEST_OUT.
import { createRequire } from "node:module";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createHmac, randomUUID } from "node:crypto";
import { join } from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run scripts/browser-test.sh`);
  return v;
};
const PHASE = env("BROWSER_TEST_PHASE");
const LOG = env("BROWSER_TEST_LOG");
const OUT = env("BROWSER_TEST_OUT");
const PROFILE = env("BROWSER_TEST_PROFILE");
const require = createRequire(join(env("BROWSER_TEST_NODE_MODULES"), "/"));
const { chromium } = require("playwright-core");

const ALLOWED = "http://localhost:8080/";
const EVIL = "http://127.0.0.1:8081/";
const EVIL_ORIGIN = "http://127.0.0.1:8081";
const DIRECT = "http://127.0.0.1:8082/";
const WAIT_MS = 10_000;
const MAX_MESSAGE = 4096; // [frames] max_message_size in the test config
const AUTH = "session"; // phase auth: the [auth.NAME] section and the cookie it reads
const minted = []; // every token phase auth made, to look for in the log

// ---------------------------------------------------------------- helpers ---

let failures = 0;
function check(ok, what) {
  console.log(`  ${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures += 1;
  return ok;
}

/** Polls `probe` until it returns a truthy value or WAIT_MS pass; returns the last value. */
async function waitFor(probe, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let value;
  for (;;) {
    value = await probe();
    if (value || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const logLines = () => readFileSync(LOG, "utf8").split("\n");
/** Log lines matching every needle (a string to contain, or a RegExp). */
const countLog = (...needles) =>
  logLines().filter((l) => needles.every((n) => (n instanceof RegExp ? n.test(l) : l.includes(n))))
    .length;
// tracing prints a &str field quoted (rule="origin_not_allowed"); accept it bare as well.
const ruleIs = (rule) => new RegExp(`\\brule="?${rule}"?(\\s|$)`);
const RULE_ORIGIN = ruleIs("origin_not_allowed");
const FROM_EVIL = new RegExp(`\\sorigin="?${EVIL_ORIGIN.replaceAll(".", "\\.")}"?(\\s|$)`);
const joins = (...more) => countLog("chat client joined", "room=/chat", ...more);
// The backend logs what it agreed to as compression="permessage-deflate; ..." (or none).
const DEFLATE_JOIN = /\scompression="?permessage-deflate\b/;

const statusText = (page) => page.textContent("#status");
async function waitStatus(page, needle) {
  const ok = await waitFor(async () => (await statusText(page)).includes(needle));
  return check(ok, `${page.label}: #status shows "${needle}" (it says "${await statusText(page)}")`);
}
async function waitMessage(page, text) {
  const ok = await waitFor(async () => (await page.textContent("#messages")).includes(text));
  return check(ok, `${page.label}: sees "${text}"`);
}
async function compressionShows(page, needle) {
  const text = await page.textContent("#compression");
  return check(text.includes(needle), `${page.label}: #compression shows "${needle}" (it says "${text}")`);
}
async function say(page, text) {
  await page.fill("#input", text);
  await page.click("#send");
}

async function open(context, url, label, reuse) {
  const page = reuse ?? (await context.newPage());
  page.label = label;
  page.consoleText = [];
  page.on("console", (m) => page.consoleText.push(m.text()));
  page.on("pageerror", (e) => check(false, `${label}: no script error (${e.message})`));
  await page.goto(url, { timeout: WAIT_MS });
  return page;
}

// -------------------------------------------------------------- the browser ---

const args = [
  "--no-sandbox",
  "--headless",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-default-apps",
  "--disable-extensions",
];
// Phase auth: to Chromium the socket (wss://localhost:8443) is third-party to the page
// (http://localhost:8080: another scheme, so another site), and it blocks third-party cookies by
// default (the cookie's blockedReasons: UserPreferences). The profile allows them for wsguard's
// origin alone, as a user's "allowed to use third-party cookies" exception would.
if (PHASE === "auth") {
  const exceptions = { cookies: { "https://localhost:8443,*": { setting: 1 } } };
  mkdirSync(join(PROFILE, "Default"), { recursive: true });
  writeFileSync(
    join(PROFILE, "Default", "Preferences"),
    JSON.stringify({ profile: { content_settings: { exceptions } } })
  );
}
// A fresh profile every run; HOME (set by the script) holds the NSS db that trusts certs/ca.crt:
// no certificate error is ignored.
const context = await chromium.launchPersistentContext(PROFILE, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args,
  env: { ...process.env },
  viewport: { width: 760, height: 460 },
  timeout: 30_000,
});

try {
  if (PHASE === "enforce") await enforce();
  else if (PHASE === "report") await report();
  else if (PHASE === "auth") await auth();
  else throw new Error(`unknown BROWSER_TEST_PHASE ${PHASE}`);
} finally {
  await context.close();
}
if (failures) {
  console.log(`${failures} check(s) FAILED; wsguard log: ${LOG}`);
  process.exit(1);
}
console.log(`phase ${PHASE}: all checks passed`);

// ------------------------------------------------------------------ phases ---

async function enforce() {
  console.log("0. without wsguard, the chat backend negotiates permessage-deflate with Chromium");
  const direct = await open(context, DIRECT, "direct", context.pages()[0]);
  if (await waitStatus(direct, "connected")) {
    await compressionShows(direct, "permessage-deflate");
    check((await waitFor(() => joins(DEFLATE_JOIN) === 1)) === true, "backend logged a join with permessage-deflate");
    await say(direct, "straight to the backend, compressed");
    await waitMessage(direct, "straight to the backend, compressed");
  }
  await direct.close();

  console.log("1. two tabs on the allowed page chat through wsguard");
  const joinsFirst = joins();
  const alice = await open(context, ALLOWED, "alice");
  const bob = await open(context, ALLOWED, "bob");
  const aliceUp = await waitStatus(alice, "connected");
  const bobUp = await waitStatus(bob, "connected");
  if (!aliceUp || !bobUp) {
    throw new Error(
      "the allowed page cannot connect: is certs/ca.crt trusted (NSS db) and wsguard up? " +
        `wsguard log: ${LOG}; page console: ${JSON.stringify(alice.consoleText)}`
    );
  }
  check((await waitFor(() => joins() === joinsFirst + 2)) === true, `backend logged 2 joins (${joins() - joinsFirst})`);
  // Through wsguard: the browser agreed to what wsguard relayed, the backend to what wsguard offered.
  await compressionShows(alice, "permessage-deflate");
  await compressionShows(bob, "client_no_context_takeover");
  const tightened = () => joins(DEFLATE_JOIN, "server_no_context_takeover");
  check(tightened() === 2, `backend logged both joins with permessage-deflate; server_no_context_takeover (${tightened()})`);
  await alice.fill("#name", "alice");
  await bob.fill("#name", "bob");
  await say(alice, "hi bob, this goes through wsguard");
  await waitMessage(bob, "hi bob, this goes through wsguard");
  await say(bob, "hello alice, and back again");
  await waitMessage(alice, "hello alice, and back again");
  await waitMessage(bob, "hello alice, and back again");
  await bob.screenshot({ path: join(OUT, "chat-allowed.png") });

  console.log("2. the evil page is refused at the handshake");
  const joinsBefore = joins();
  const evil = await open(context, EVIL, "evil");
  await waitStatus(evil, "closed: 1006");
  check(
    (await evil.textContent("#banner"))?.includes("not in the allow-list"),
    "evil: the page is labelled as not in the allow-list"
  );
  check(
    evil.consoleText.some((t) => /websocket/i.test(t) && t.includes("403")),
    `evil: Chromium reports the 403 (${JSON.stringify(evil.consoleText)})`
  );
  const refused = () =>
    countLog("handshake refused", RULE_ORIGIN, FROM_EVIL);
  await waitFor(() => refused() >= 1);
  await new Promise((r) => setTimeout(r, 300)); // a second attempt would show by now
  check(refused() === 1, `wsguard logged exactly one origin_not_allowed refusal for ${EVIL_ORIGIN} (${refused()})`);
  check(countLog(RULE_ORIGIN) === 1, "and no other origin_not_allowed refusal");
  // The same refusal in wsguard's metrics ([admin] listen, GET /metrics).
  await checkMetric("wsguard_handshakes_refused_total", { reason: "origin_not_allowed" }, 1);
  check(joins() === joinsBefore, `backend logged no join for the evil page (joins ${joinsBefore} -> ${joins()})`);
  await evil.screenshot({ path: join(OUT, "chat-evil-refused.png") });
  await evil.close();

  console.log("3. a message over max_message_size closes the socket with 1009");
  const big = "x".repeat(MAX_MESSAGE + 1000);
  await say(alice, big);
  await waitStatus(alice, "1009");
  check(
    (await alice.inputValue("#input")) === big,
    "alice: the refused message is put back into the input"
  );
  check(countLog("code=1009") === 1, "wsguard logged the 1009 close");
  await alice.screenshot({ path: join(OUT, "chat-1009.png") });
  check((await statusText(bob)) === "connected", "bob is still connected");
  await say(bob, "still here");
  await waitMessage(bob, "still here");
}

async function report() {
  console.log("4. report mode: the evil page connects, wsguard logs the origin and lets it through");
  const joinsBefore = joins();
  const evil = await open(context, EVIL, "evil", context.pages()[0]);
  await waitStatus(evil, "connected");
  const reported = () =>
    countLog("origin refused (report mode: let through)", FROM_EVIL, RULE_ORIGIN);
  check((await waitFor(() => reported() === 1)) === true, `wsguard logged one report-mode line for ${EVIL_ORIGIN} (${reported()})`);
  await checkMetric("wsguard_origins_reported_total", { reason: "origin_not_allowed" }, 1);
  check(countLog("handshake refused") === 0, "wsguard refused no handshake");
  check((await waitFor(() => joins() === joinsBefore + 1)) === true, "the backend logged the evil page's join");
  await evil.fill("#name", "mallory");
  await say(evil, "report mode lets me in");
  await waitMessage(evil, "report mode lets me in");
}

/** Checks a Prometheus counter at $BROWSER_TEST_METRICS_URL, if that is set. */
async function checkMetric(name, labels, want) {
  const url = process.env.BROWSER_TEST_METRICS_URL;
  if (!url) return;
  const text = await (await fetch(url, { signal: AbortSignal.timeout(WAIT_MS) })).text();
  const value = text
    .split("\n")
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .filter((l) => Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)))
    .reduce((sum, l) => sum + Number(l.trim().split(/\s+/).pop()), 0);
  check(value === want, `${url}: ${name}${JSON.stringify(labels)} = ${value}, want ${want}`);
}

// ------------------------------------------------------------ auth phase ---

/** An HS256 JWT signed with the run's secret, expiring `expIn` seconds from now (whole seconds). */
function mint(expIn) {
  const secret = readFileSync(env("BROWSER_TEST_SECRET_FILE"));
  const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const exp = now + expIn;
  const claims = { sub: "browser-test", jti: randomUUID(), iat: Math.min(now, exp - 1), exp };
  const signed = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  const token = `${signed}.${createHmac("sha256", secret).update(signed).digest("base64url")}`;
  minted.push(token);
  return { token, exp };
}
/** The only cookie in the browser: `session` = `token`. Secure + SameSite=None: the page
 * (http://localhost:8080) and the socket (wss://localhost:8443) are schemefully cross-site, so a
 * Lax or Strict cookie would not go with the handshake. It outlives every token it carries, so an
 * expired token still reaches wsguard. */
async function setSession(token) {
  await context.clearCookies();
  await context.addCookies([
    {
      name: AUTH,
      value: token,
      domain: "localhost",
      path: "/",
      secure: true,
      sameSite: "None",
      expires: Math.floor(Date.now() / 1000) + 600,
    },
  ]);
}

/** Reloads `page` (its cookies set beforehand) and checks wsguard refuses its socket by `rule`,
 * the first such refusal since wsguard started. */
async function refusedBy(page, rule) {
  const joinsBefore = joins();
  page.consoleText = [];
  await page.reload({ timeout: WAIT_MS });
  await waitStatus(page, "closed: 1006");
  // Chromium's words for a 401 with a WWW-Authenticate challenge; it does not print the code.
  check(
    page.consoleText.some((t) => /websocket/i.test(t) && t.includes("HTTP Authentication failed")),
    `${page.label}: Chromium reports the 401 (${JSON.stringify(page.consoleText)})`
  );
  const refused = () => countLog("handshake refused", ruleIs(rule), /\bpath="?\/chat"?(\s|$)/);
  await waitFor(() => refused() >= 1);
  await new Promise((r) => setTimeout(r, 300)); // a second attempt would show by now
  check(refused() === 1, `wsguard logged exactly one ${rule} refusal (${refused()})`);
  await checkMetric("wsguard_handshakes_refused_total", { reason: rule, route: "/chat" }, 1);
  await checkMetric("wsguard_auth_decisions_total", { auth: AUTH, outcome: rule }, 1);
  check(joins() === joinsBefore, `backend logged no join for the refused page (joins ${joinsBefore} -> ${joins()})`);
}

async function auth() {
  console.log("5. auth: the allowed page with a valid session cookie chats");
  await setSession(mint(600).token);
  const page = await open(context, ALLOWED, "session", context.pages()[0]);
  if (!(await waitStatus(page, "connected"))) {
    throw new Error(
      `the page cannot connect with a session cookie: wsguard log: ${LOG}; page console: ${JSON.stringify(page.consoleText)}`
    );
  }
  await page.fill("#name", "carol");
  await say(page, "signed in through wsguard");
  await waitMessage(page, "signed in through wsguard");
  check(joins() === 1, `backend logged 1 join (${joins()})`);
  await checkMetric("wsguard_auth_decisions_total", { auth: AUTH, outcome: "allowed" }, 1);
  await page.screenshot({ path: join(OUT, "chat-auth-ok.png") });

  console.log("6. without the cookie, then with an expired token, the handshake is refused");
  await context.clearCookies();
  await refusedBy(page, "auth_missing");
  await page.screenshot({ path: join(OUT, "chat-auth-refused.png") });
  await setSession(mint(-60).token);
  await refusedBy(page, "auth_expired");
  check(countLog("handshake refused") === 2, `wsguard refused no other handshake (${countLog("handshake refused")})`);

  console.log("7. a connected page is closed with 1008 when its token expires");
  const short = mint(3);
  await setSession(short.token);
  await page.reload({ timeout: WAIT_MS });
  await waitStatus(page, "connected");
  // Counted from here: the backend also logs a leave for the script's port probe.
  const left = () => countLog("chat client left");
  const leftBefore = left();
  await waitStatus(page, "closed: 1008 token expired");
  const late = Date.now() / 1000 - short.exp;
  // leeway and grace are 0: the close is due at exp; a little after it, never before.
  check(late >= 0 && late < 2, `closed ${late.toFixed(2)} s after the token's exp`);
  const closedLine = () => countLog("connection closed", /\bby="?token_expired"?(\s|$)/, /\bcode=1008\b/);
  check((await waitFor(() => closedLine() === 1)) === true, `wsguard logged one connection closed by=token_expired code=1008 (${closedLine()})`);
  await checkMetric("wsguard_connections_closed_total", { code: "1008", by: "token_expired" }, 1);
  // wsguard ended the backend's side too (with 1001; the demo backend does not log the code).
  check((await waitFor(() => left() === leftBefore + 1)) === true, `the backend saw the client leave (${left() - leftBefore})`);
  await page.screenshot({ path: join(OUT, "chat-auth-expired.png") });

  console.log("8. no token appears in wsguard's log");
  const log = readFileSync(LOG, "utf8");
  const leaked = minted.filter((t) => log.includes(t) || log.includes(t.split(".")[2]));
  check(leaked.length === 0, `none of the ${minted.length} tokens (or their signatures) is in ${LOG} (${leaked.length} found)`);
}
