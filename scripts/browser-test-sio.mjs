// Socket.IO half of scripts/browser-test.sh (run it through that script: it starts wsguard and the
// backends). wsguard listens on wss:// / https://localhost:8443 (certs/localhost.crt, trusted
// through the NSS db in HOME) with one route, path "/socket.io/", framework = "socket.io", to two
// stock Socket.IO 4.8 backends (tests/frameworks/sio-chat-server.mjs, SIO_CORS=*: they would serve
// any origin), and [origin] allow = ["http://localhost:8080"]. This program serves
// tests/frameworks/sio-chat-page.html and socket.io-client's browser bundle itself, on
// http://localhost:8080 (allowed) and http://127.0.0.1:8081 ("evil", not in the allow-list).
//
//   9.  control: the evil page straight at a backend (no wsguard) connects, upgrades and chats:
//       the backend on its own lets that origin in;
//   10. two tabs on the allowed page, DEFAULT transports, through wsguard: each connects over
//       polling, upgrades to "websocket" (socket.io.engine.transport.name), chats and shows the
//       ack; the backends logged polling connections from http://localhost:8080, their upgrades
//       and no "Session ID unknown" (the sessions stuck to their backends); /metrics counts the
//       passed polling requests;
//   11. the evil page through wsguard, default transports: connect_error on the page, 403s in
//       /metrics (wsguard_http_requests_total{route="/socket.io/",status="403"}) and `request
//       refused` lines in wsguard's log, no request from its origin in any backend's log;
//   12. the evil page through wsguard, transports: ["websocket"]: connect_error, Chromium reports
//       the 403, wsguard_handshakes_refused_total{reason="origin_not_allowed",route="/socket.io/"}
//       grows, wsguard logs `handshake refused`, and no backend saw the upgrade;
//   13. both lanes on one evil page (the screenshot): two connect_errors, still no session.
// Every wait is bounded. Screenshots go to $BROWSER_TEST_OUT (socketio-*.png).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run scripts/browser-test.sh`);
  return v;
};
const LOG = env("BROWSER_TEST_LOG");
const OUT = env("BROWSER_TEST_OUT");
const PROFILE = env("BROWSER_TEST_PROFILE");
const METRICS = env("BROWSER_TEST_METRICS_URL");
const SERVER = env("BROWSER_TEST_SIO_SERVER"); // wsguard, e.g. https://localhost:8443
const DIRECT = env("BROWSER_TEST_SIO_DIRECT"); // one backend itself, http://127.0.0.1:PORT
const BACKEND_LOGS = env("BROWSER_TEST_SIO_LOGS").split(",");
const PAGE = readFileSync(env("BROWSER_TEST_SIO_PAGE"), "utf8");
const BUNDLE = readFileSync(env("BROWSER_TEST_SIO_BUNDLE"));
const require = createRequire(join(env("BROWSER_TEST_NODE_MODULES"), "/"));
const { chromium } = require("playwright-core");

const GOOD = { listen: 8080, url: "http://localhost:8080", kind: "good", banner: "localhost:8080 — in the allow-list" };
const EVIL = { listen: 8081, url: "http://127.0.0.1:8081", kind: "evil", banner: "evil.example — not in the allow-list" };
const ROUTE = "/socket.io/";
const WAIT_MS = 10_000;

// ---------------------------------------------------------------- helpers ---

let failures = 0;
function check(ok, what) {
  console.log(`  ${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures += 1;
  return ok;
}
async function waitFor(probe, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let value;
  for (;;) {
    value = await probe();
    if (value || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Every JSON event the backends logged (each with "backend"), in file order per backend. */
const events = () =>
  BACKEND_LOGS.flatMap((f) =>
    readFileSync(f, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l))
  );
/** Backend events after `mark` (a count per log file taken by marks()) that pass `pick`. */
const marks = () => BACKEND_LOGS.map((f) => readFileSync(f, "utf8").split("\n").filter(Boolean).length);
const since = (mark, pick = () => true) =>
  BACKEND_LOGS.flatMap((f, i) =>
    readFileSync(f, "utf8")
      .split("\n")
      .filter(Boolean)
      .slice(mark[i])
      .map((l) => JSON.parse(l))
  ).filter(pick);

/** The sum of a Prometheus counter's series whose labels include `labels`. */
async function metric(name, labels) {
  const text = await (await fetch(METRICS, { signal: AbortSignal.timeout(WAIT_MS) })).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .filter((l) => Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)))
    .reduce((sum, l) => sum + Number(l.trim().split(/\s+/).pop()), 0);
}
const http403 = () => metric("wsguard_http_requests_total", { route: ROUTE, status: "403" });
const http200 = () => metric("wsguard_http_requests_total", { route: ROUTE, status: "200" });
const wsRefused = () =>
  metric("wsguard_handshakes_refused_total", { reason: "origin_not_allowed", route: ROUTE });

const logLines = () => readFileSync(LOG, "utf8").split("\n");
// wsguard's text log: `request refused` (a pass-through request) or `handshake refused` (an
// upgrade), rule origin_not_allowed, for the evil origin (a &str field may be quoted or bare).
const refusedInLog = (what) =>
  logLines().filter(
    (l) =>
      l.includes(`${what} refused`) &&
      /\brule="?origin_not_allowed"?(\s|$)/.test(l) &&
      new RegExp(`\\sorigin="?${EVIL.url.replaceAll(".", "\\.")}"?(\\s|$)`).test(l)
  ).length;

const lane = (page, i, what) => page.textContent(`#${what}-${i}`);
async function waitLane(page, i, what, needle) {
  const ok = await waitFor(async () => (await lane(page, i, what)).includes(needle));
  return check(ok, `${page.label} lane ${i}: #${what} shows "${needle}" (it says "${await lane(page, i, what)}")`);
}
/** socket.io.engine.transport.name of lane i, read in the page. */
const engineTransport = (page, i) =>
  page.evaluate((i) => window.lanes[i].io.engine?.transport?.name ?? null, i);
const everConnected = (page) => page.evaluate(() => window.lanes.some((s) => s.everConnected));

async function open(context, site, lanes, label, server = SERVER, reuse) {
  const page = reuse ?? (await context.newPage());
  page.label = label;
  page.consoleText = [];
  page.on("console", (m) => page.consoleText.push(m.text()));
  page.on("pageerror", (e) => check(false, `${label}: no script error (${e.message})`));
  await page.goto(`${site.url}/?server=${encodeURIComponent(server)}&lanes=${lanes}`, { timeout: WAIT_MS });
  return page;
}
async function chat(page, i, body) {
  await page.fill(`#input-${i}`, body);
  await page.click(`#send-${i}`);
  return waitLane(page, i, "messages", body);
}

// ------------------------------------------------------- the page servers ---

const servers = [GOOD, EVIL].map((site) => {
  const html = PAGE.replaceAll("@KIND@", site.kind).replaceAll("@BANNER@", site.banner);
  const server = createServer((req, res) => {
    const path = new URL(req.url, site.url).pathname;
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
      res.end(html);
    } else if (path === "/socket.io.min.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" });
      res.end(BUNDLE);
    } else if (path === "/favicon.ico") {
      res.writeHead(204).end(); // no 404 in the console
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(site.listen, "127.0.0.1", () => resolve(server));
  });
});
const listening = await Promise.all(servers);

// -------------------------------------------------------------- the browser ---

const context = await chromium.launchPersistentContext(PROFILE, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
  ],
  env: { ...process.env },
  viewport: { width: 760, height: 460 },
  timeout: 30_000,
});
try {
  await run();
} finally {
  await context.close();
  for (const s of listening) s.close();
}
if (failures) {
  console.log(`${failures} check(s) FAILED; wsguard log: ${LOG}; backend logs: ${BACKEND_LOGS.join(", ")}`);
  process.exit(1);
}
console.log("phase socketio: all checks passed");

// ------------------------------------------------------------------- steps ---

async function run() {
  console.log(`9. control: the evil page straight at a backend (${DIRECT}, no wsguard) gets a session`);
  let mark = marks();
  const direct = await open(context, EVIL, "default", "evil-direct", DIRECT, context.pages()[0]);
  if (await waitLane(direct, 0, "status", "connected")) {
    check((await waitFor(async () => (await engineTransport(direct, 0)) === "websocket")) === true, "evil-direct: upgraded to websocket");
    await chat(direct, 0, "the backend alone lets any origin in");
  }
  const directConns = since(mark, (e) => e.event === "connection" && e.origin === EVIL.url).length;
  check(directConns === 1, `a backend logged 1 connection from ${EVIL.url} (${directConns})`);
  await direct.close();

  console.log("10. two tabs on the allowed page, default transports, chat through wsguard");
  mark = marks();
  const passedBefore = await http200();
  const tabs = [await open(context, GOOD, "default", "alice"), await open(context, GOOD, "default", "bob")];
  for (const tab of tabs) {
    if (!(await waitLane(tab, 0, "status", "connected"))) {
      throw new Error(
        "the allowed page cannot connect through wsguard: is certs/ca.crt trusted and wsguard up? " +
          `wsguard log: ${LOG}; page console: ${JSON.stringify(tab.consoleText)}`
      );
    }
  }
  for (const tab of tabs) {
    const upgraded = await waitFor(async () => (await engineTransport(tab, 0)) === "websocket");
    check(upgraded === true, `${tab.label}: socket.io.engine.transport.name is "websocket" (${await engineTransport(tab, 0)})`);
    await waitLane(tab, 0, "transport", "websocket");
    await chat(tab, 0, `${tab.label} chats through wsguard`);
    await waitLane(tab, 0, "messages", "over websocket");
  }
  const conns = since(mark, (e) => e.event === "connection");
  check(
    conns.length === 2 && conns.every((e) => e.transport === "polling" && e.origin === GOOD.url),
    `the backends logged 2 polling connections from ${GOOD.url} (${JSON.stringify(conns.map((e) => [e.backend, e.transport, e.origin]))})`
  );
  const upgrades = since(mark, (e) => e.event === "upgrade" && e.to === "websocket");
  check(
    upgrades.length === 2 && conns.every((c) => upgrades.some((u) => u.sid === c.sid && u.backend === c.backend)),
    `each session upgraded to websocket on the backend that opened it (${upgrades.length})`
  );
  const chats = since(mark, (e) => e.event === "chat" && e.transport === "websocket").length;
  check(chats === 2, `the backends logged 2 chats over websocket (${chats})`);
  const unknown = since(mark, (e) => e.event === "connection_error").length;
  check(unknown === 0, `no backend logged a connection_error such as "Session ID unknown" (${unknown})`);
  const passed = (await http200()) - passedBefore;
  check(passed >= 2, `${METRICS}: wsguard_http_requests_total{route="${ROUTE}",status="200"} grew by ${passed} (>= 2: the polling handshake and more)`);
  console.log(`     sessions on backends: ${conns.map((e) => e.backend).join(", ")}`);
  await tabs[1].screenshot({ path: join(OUT, "socketio-allowed.png") });
  for (const tab of tabs) await tab.close();

  console.log("11. the evil page through wsguard, default transports (polling first): no session");
  mark = marks();
  let before403 = await http403();
  const evilPoll = await open(context, EVIL, "default", "evil-polling");
  await waitLane(evilPoll, 0, "status", "connect_error");
  await waitLane(evilPoll, 0, "errors", "xhr poll error");
  await waitFor(async () => (await http403()) > before403);
  const poll403 = (await http403()) - before403;
  check(poll403 >= 1, `${METRICS}: wsguard_http_requests_total{route="${ROUTE}",status="403"} grew by ${poll403}`);
  check(refusedInLog("request") >= 1, `wsguard logged ${refusedInLog("request")} "request refused" line(s), rule origin_not_allowed, for ${EVIL.url}`);
  // Chromium hides the 403 from the page's script (the refusal carries no CORS header); it
  // prints the blocked request to the console.
  console.log(`     evil-polling console: ${JSON.stringify(evilPoll.consoleText.slice(0, 2))}`);
  await noSessionFor(evilPoll, mark);
  await evilPoll.screenshot({ path: join(OUT, "socketio-evil-polling.png") });
  await evilPoll.close();

  console.log('12. the evil page through wsguard, transports: ["websocket"]: no session');
  mark = marks();
  const beforeWs = await wsRefused();
  const evilWs = await open(context, EVIL, "websocket", "evil-websocket");
  await waitLane(evilWs, 0, "status", "connect_error");
  await waitLane(evilWs, 0, "errors", "websocket error");
  check(
    evilWs.consoleText.some((t) => /websocket/i.test(t) && t.includes("403")),
    `evil-websocket: Chromium reports the 403 (${JSON.stringify(evilWs.consoleText.slice(0, 2))})`
  );
  await waitFor(async () => (await wsRefused()) > beforeWs);
  const refused = (await wsRefused()) - beforeWs;
  check(refused >= 1, `${METRICS}: wsguard_handshakes_refused_total{reason="origin_not_allowed",route="${ROUTE}"} grew by ${refused}`);
  check(refusedInLog("handshake") >= 1, `wsguard logged ${refusedInLog("handshake")} "handshake refused" line(s), rule origin_not_allowed, for ${EVIL.url}`);
  await noSessionFor(evilWs, mark);
  await evilWs.screenshot({ path: join(OUT, "socketio-evil-websocket.png") });
  await evilWs.close();

  console.log("13. both lanes on one evil page: two connect_errors (the screenshot)");
  mark = marks();
  before403 = await http403();
  const evil = await open(context, EVIL, "default,websocket", "evil");
  await waitLane(evil, 0, "errors", "xhr poll error");
  await waitLane(evil, 1, "errors", "websocket error");
  await noSessionFor(evil, mark);
  await evil.screenshot({ path: join(OUT, "socketio-evil-refused.png") });

  const total403 = await http403();
  const totalRefused = await wsRefused();
  check(total403 >= 1, `at the end: wsguard_http_requests_total{route="${ROUTE}",status="403"} = ${total403} (>= 1)`);
  check(totalRefused >= 1, `at the end: wsguard_handshakes_refused_total{reason="origin_not_allowed",route="${ROUTE}"} = ${totalRefused} (>= 1)`);
  const evilSeen = events().filter((e) => e.origin === EVIL.url);
  console.log(
    `     metrics: 403 = ${total403}, origin_not_allowed refusals = ${totalRefused}, 200 = ${await http200()}; ` +
      `backend events from ${EVIL.url} in the whole run: ${evilSeen.length} (all from the control, step 9)`
  );
}

/** The page (every lane) never connected, and no backend saw a request from the evil origin
 * since `mark`; a second's wait first, so a retry (socket.io-client reconnects) would show. */
async function noSessionFor(page, mark) {
  await sleep(1000);
  check(!(await everConnected(page)), `${page.label}: no lane ever connected`);
  const seen = since(mark, (e) => e.origin === EVIL.url || e.event === "connection");
  check(
    seen.length === 0,
    `${page.label}: no backend saw a request or connection from ${EVIL.url} (${JSON.stringify(seen.slice(0, 3))})`
  );
}
