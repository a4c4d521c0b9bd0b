// A @microsoft/signalr (JS client) chat client for scripts/frameworks-test.sh: HubConnectionBuilder
// with the default negotiate-then-pick-a-transport (WebSockets first), or one transport forced
// by SIGNALR_TRANSPORT ("WebSockets" or "LongPolling"). It invokes "Echo" SIGNALR_COUNT times
// (waiting for each Completion) and sends "Send" as many times (answered by an "echo"
// invocation from the server), and reports which backend answered each.
//
// Environment: FW_NODE_MODULES (see fw-common.mjs), SIGNALR_URL (the hub, http[s]://host:port/
// chathub), SIGNALR_TRANSPORT, SIGNALR_ORIGIN (sent as the Origin header on negotiate, every
// LongPolling request and the WebSocket upgrade, via the `headers` option), SIGNALR_COUNT
// (default 5), SIGNALR_SIZE (default 32), SIGNALR_INTERVAL_MS (default 0), SIGNALR_STAY_MS
// (stay connected this long before the messages; default 0), SIGNALR_TIMEOUT_MS (default 60000),
// SIGNALR_INSECURE (accept a self-signed certificate), FW_NAME.
//
// Stdout, one JSON line per event: {"event":"connected","transport","connectionId"},
// {"event":"echo","n","kind":"invoke"|"send","backend","transport","intact"},
// {"event":"signalr_log","level","message"} (the client's own warnings and errors),
// {"event":"closed","error"}, last {"event":"done","invoked","sent","expected","intact",
// "transport","backends","errors","ms"}. Exit status 0 however it went.
import { env, flag, log as emit, need, number, require } from "./fw-common.mjs";

if (flag("SIGNALR_INSECURE")) process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
const signalR = require("@microsoft/signalr");
const name = env("FW_NAME", "client");
const log = (event) => emit({ client: name, ...event });
const count = number("SIGNALR_COUNT", 5);
const size = number("SIGNALR_SIZE", 32);
const interval = number("SIGNALR_INTERVAL_MS", 0);
const started = Date.now();
const result = { invoked: 0, sent: 0, expected: count, intact: true, transport: null, connectionId: null, backends: {}, errors: [] };

let connection;
let finished = false;
const finish = async (why) => {
  if (finished) return;
  finished = true;
  if (why) result.errors.push(why);
  result.ms = Date.now() - started;
  log({ event: "done", ...result });
  try { await connection?.stop(); } catch {}
  process.exit(0);
};
setTimeout(() => finish(`timed out after ${number("SIGNALR_TIMEOUT_MS", 60000)} ms`), number("SIGNALR_TIMEOUT_MS", 60000));

// The client logs "Selecting transport 'X'."; warnings and errors are reported as they are.
let selected = null;
const logger = {
  log(level, message) {
    const m = /Selecting transport '(\w+)'/.exec(message);
    if (m) selected = m[1];
    if (level >= signalR.LogLevel.Warning) log({ event: "signalr_log", level: signalR.LogLevel[level], message });
  },
};

const options = { logger };
if (env("SIGNALR_ORIGIN")) options.headers = { Origin: env("SIGNALR_ORIGIN") };
const forced = env("SIGNALR_TRANSPORT");
if (forced) {
  if (!(forced in signalR.HttpTransportType)) throw new Error(`SIGNALR_TRANSPORT=${forced}: not a transport`);
  options.transport = signalR.HttpTransportType[forced];
}
connection = new signalR.HubConnectionBuilder().withUrl(need("SIGNALR_URL"), options).configureLogging(logger).build();

const body = (n) => String(n).padEnd(size, "abcdefghijklmnopqrstuvwxyz"[n % 26]);
const record = (n, kind, answer) => {
  const intact = answer?.echo === body(n);
  if (!intact) result.intact = false;
  result.backends[answer?.backend] = (result.backends[answer?.backend] ?? 0) + 1;
  log({ event: "echo", n, kind, backend: answer?.backend, transport: answer?.transport, connectionId: answer?.connectionId, intact });
};
let echoes = 0;
const sentDone = new Promise((resolve) => {
  connection.on("echo", (answer) => {
    const n = echoes++;
    record(n, "send", answer);
    result.sent += 1;
    if (result.sent === count) resolve();
  });
  if (count === 0) resolve();
});
connection.onclose((error) => {
  log({ event: "closed", error: error ? String(error.message ?? error) : null });
  if (!finished) finish(`connection closed${error ? `: ${error.message ?? error}` : ""}`);
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
try {
  await connection.start();
  // The transport the connection runs on: the class of connection.connection.transport, and
  // the name the client logged when it picked it.
  const transportClass = connection.connection?.transport?.constructor?.name ?? null;
  result.transport = selected ?? transportClass;
  result.connectionId = connection.connectionId;
  log({ event: "connected", transport: result.transport, transportClass, connectionId: connection.connectionId });
  await sleep(number("SIGNALR_STAY_MS", 0));
  for (let n = 0; n < count; n++) {
    const answer = await connection.invoke("Echo", body(n));
    record(n, "invoke", answer);
    result.invoked += 1;
    await connection.send("Send", body(n));
    if (interval) await sleep(interval);
  }
  await sentDone;
  await finish();
} catch (e) {
  await finish(`error: ${e?.message ?? e}`);
}
