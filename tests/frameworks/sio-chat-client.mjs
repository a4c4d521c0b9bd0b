// A socket.io-client 4.8 chat client for scripts/frameworks-test.sh: DEFAULT transports
// (HTTP long-polling first, then the upgrade to WebSocket) unless SIO_TRANSPORTS says otherwise,
// and socket.io-client's own reconnection, as a browser would run it.
//
// It sends SIO_COUNT "chat" messages of SIO_SIZE characters, one every SIO_INTERVAL_MS (the first
// once connected, and once upgraded when SIO_WAIT_UPGRADE is set), each with an ack (timeout
// SIO_ACK_TIMEOUT_MS); then stays SIO_STAY_MS longer and exits.
//
// Environment: FW_NODE_MODULES (see fw-common.mjs), SIO_URL (http[s]://host:port),
// SIO_URLS (comma-separated: on each reconnect attempt the next one is tried, standing in for a
// proxy's choice of backend when the harness runs straight at the backends), SIO_PATH (default
// "/socket.io/"), SIO_ORIGIN (the Origin header, sent on every polling request and the WebSocket
// upgrade), SIO_TRANSPORTS (e.g. "polling"), SIO_COUNT (default 5), SIO_SIZE (default 32),
// SIO_INTERVAL_MS (default 0), SIO_STAY_MS (default 0), SIO_ACK_TIMEOUT_MS (default 10000),
// SIO_TIMEOUT_MS (whole run, default 60000), SIO_INSECURE (rejectUnauthorized false, for
// wsguard's self-signed development certificate), SIO_NO_RECONNECT, SIO_WAIT_UPGRADE, FW_NAME.
//
// Stdout, one JSON line per event: {"event":"open","sid","transport"} (the engine's first
// transport), {"event":"connected","sid","transport"},
// {"event":"upgraded","transport"}, {"event":"ack","n","backend","transport","intact","ms"},
// {"event":"ack_timeout","n"}, {"event":"connect_error","message","description"},
// {"event":"disconnect","reason"}, {"event":"reconnect","attempt"}, {"event":"broadcast",...}
// (counted only), and last {"event":"done","acked","expected","intact","backends":{name:n},
// "transports":[...],"upgraded":bool,"errors":[...],"reconnects":N,"ms":N}. Exit status 0
// however it went: the script judges the result.
import { env, flag, list, log as emit, need, number, require } from "./fw-common.mjs";

const { io } = require("socket.io-client");
const name = env("FW_NAME", "client");
const log = (event) => emit({ client: name, ...event });

const count = number("SIO_COUNT", 5);
const size = number("SIO_SIZE", 32);
const interval = number("SIO_INTERVAL_MS", 0);
const stay = number("SIO_STAY_MS", 0);
const ackTimeout = number("SIO_ACK_TIMEOUT_MS", 10000);
const urls = list("SIO_URLS") ?? [need("SIO_URL")];

const started = Date.now();
const result = {
  acked: 0, expected: count, intact: true, backends: {}, transports: [], upgraded: false,
  errors: [], reconnects: 0, broadcasts: 0, timeouts: 0,
};
let finished = false;
const finish = (why) => {
  if (finished) return;
  finished = true;
  if (why) result.errors.push(why);
  result.ms = Date.now() - started;
  log({ event: "done", ...result });
  socket.close();
  setTimeout(() => process.exit(0), 50);
};
setTimeout(() => finish(`timed out after ${number("SIO_TIMEOUT_MS", 60000)} ms`), number("SIO_TIMEOUT_MS", 60000));

const options = {
  path: env("SIO_PATH", "/socket.io/"),
  reconnection: !flag("SIO_NO_RECONNECT"),
  rejectUnauthorized: !flag("SIO_INSECURE"),
};
if (env("SIO_ORIGIN")) options.extraHeaders = { Origin: env("SIO_ORIGIN") };
if (list("SIO_TRANSPORTS")) options.transports = list("SIO_TRANSPORTS");

let urlIndex = 0;
const socket = io(urls[0], options);

// Each body is its number padded with a letter to `size`, so a damaged or swapped echo shows.
const body = (n) => String(n).padEnd(size, "abcdefghijklmnopqrstuvwxyz"[n % 26]);
let sent = 0;
let answered = 0;
const settle = () => {
  answered += 1;
  if (answered === count) setTimeout(() => finish(), stay);
};
const send = () => {
  if (finished || sent >= count) return;
  const n = sent++;
  const at = Date.now();
  socket.timeout(ackTimeout).emit("chat", { n, body: body(n) }, (err, ack) => {
    if (err) {
      result.timeouts += 1;
      result.errors.push(`ack ${n} timed out`);
      log({ event: "ack_timeout", n });
    } else {
      const intact = ack?.n === n && ack?.body === body(n);
      if (!intact) result.intact = false;
      result.acked += 1;
      result.backends[ack?.backend] = (result.backends[ack?.backend] ?? 0) + 1;
      log({ event: "ack", n, backend: ack?.backend, transport: ack?.transport, len: ack?.len, intact, ms: Date.now() - at });
    }
    settle();
  });
  if (sent < count) setTimeout(send, interval);
};
let sending = false;
const startSending = () => {
  if (sending) return;
  sending = true;
  if (count === 0) setTimeout(() => finish(), stay);
  else send();
};

// The engine opens (first transport) before the namespace connects, and may upgrade before the
// CONNECT packet comes back: watch the engine from its "open".
socket.io.on("open", () => {
  const engine = socket.io.engine;
  const first = engine.transport.name;
  if (!result.transports.includes(first)) result.transports.push(first);
  log({ event: "open", sid: engine.id, transport: first, url: urls[urlIndex] });
  engine.once("upgrade", (t) => {
    result.upgraded = true;
    if (!result.transports.includes(t.name)) result.transports.push(t.name);
    log({ event: "upgraded", transport: t.name, sid: engine.id });
    if (flag("SIO_WAIT_UPGRADE") && socket.connected) startSending();
  });
});
socket.on("connect", () => {
  const transport = socket.io.engine.transport.name;
  log({ event: "connected", sid: socket.io.engine.id, transport, url: urls[urlIndex] });
  if (!flag("SIO_WAIT_UPGRADE") || transport === "websocket") startSending();
});
socket.on("chat", () => (result.broadcasts += 1));
socket.on("connect_error", (e) => {
  result.errors.push(`connect_error: ${e.message}`);
  log({ event: "connect_error", message: e.message, description: String(e.description?.message ?? e.description ?? "") });
  if (!options.reconnection) finish();
});
socket.on("disconnect", (reason) => log({ event: "disconnect", reason }));
socket.io.on("reconnect_attempt", (attempt) => {
  if (urls.length > 1) {
    urlIndex = (urlIndex + 1) % urls.length;
    socket.io.uri = urls[urlIndex];
  }
  log({ event: "reconnect_attempt", attempt, url: urls[urlIndex] });
});
socket.io.on("reconnect", (attempt) => {
  result.reconnects += 1;
  log({ event: "reconnect", attempt });
});
