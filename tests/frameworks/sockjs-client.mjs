// A sockjs-client 1.6 echo chat client for scripts/frameworks-test.sh, forced onto one transport
// (SOCKJS_TRANSPORT: "websocket", "xhr-streaming" or "xhr-polling"); it reports the transport
// it actually used (sock.transport once open).
//
// Origin: sockjs-client in Node sends no Origin header of its own on any request, and has no
// option for custom headers on its HTTP requests (GET /info, the xhr_streaming / xhr receive
// POSTs, the xhr_send POSTs carry only Host, Connection and, on xhr_send, Content-type:
// text/plain). Its WebSocket transport passes transportOptions.websocket to faye-websocket,
// whose `headers` option does reach the upgrade request. So with SOCKJS_ORIGIN set this client
// (1) gives the WebSocket transport {headers: {Origin}} and (2) wraps node:http/https
// request() so the HTTP requests carry the same Origin a browser would send (every SockJS XHR
// is a cross-origin request in a browser). SOCKJS_NO_XHR_ORIGIN=1 turns (2) off, to show
// what plain sockjs-client sends.
//
// Environment: FW_NODE_MODULES (see fw-common.mjs), SOCKJS_URL (http[s]://host:port/prefix),
// SOCKJS_TRANSPORT (required), SOCKJS_ORIGIN, SOCKJS_NO_XHR_ORIGIN, SOCKJS_COUNT (default 5),
// SOCKJS_SIZE (default 32), SOCKJS_INTERVAL_MS (default 100), SOCKJS_TIMEOUT_MS (default 30000),
// SOCKJS_INSECURE (accept a self-signed certificate), FW_NAME.
//
// Stdout, one JSON line per event: {"event":"http_request","method","path","origin"} for each
// HTTP request it makes (when wrapped), {"event":"open","transport","url"},
// {"event":"echo","n","backend","transport","server_transport","intact"},
// {"event":"close","code","reason"}, last {"event":"done","received","expected","intact",
// "transport","backends","errors","ms"}. Exit status 0 however it went.
import http from "node:http";
import https from "node:https";
import { env, flag, log as emit, need, number, require } from "./fw-common.mjs";

const name = env("FW_NAME", "client");
const log = (event) => emit({ client: name, ...event });
const origin = env("SOCKJS_ORIGIN");
const insecure = flag("SOCKJS_INSECURE");

// (2): wrap request() before sockjs-client's XHR driver uses it (it calls protocol.request at
// each request, so replacing the property is enough).
for (const module of [http, https]) {
  const request = module.request;
  module.request = function (options, ...rest) {
    if (options && typeof options === "object" && !(options instanceof URL)) {
      options = { ...options, headers: { ...(options.headers ?? {}) } };
      if (origin && !flag("SOCKJS_NO_XHR_ORIGIN")) options.headers.Origin = origin;
      if (insecure && module === https) options.rejectUnauthorized = false;
      log({ event: "http_request", method: options.method ?? "GET", path: options.path, origin: options.headers.Origin ?? null });
    }
    return request.call(this, options, ...rest);
  };
}

const SockJS = require("sockjs-client");
const transport = need("SOCKJS_TRANSPORT");
const count = number("SOCKJS_COUNT", 5);
const size = number("SOCKJS_SIZE", 32);
const interval = number("SOCKJS_INTERVAL_MS", 100);
const started = Date.now();
const result = { received: 0, expected: count, intact: true, transport: null, backends: {}, errors: [] };

let sock;
let finished = false;
const finish = (why) => {
  if (finished) return;
  finished = true;
  if (why) result.errors.push(why);
  result.ms = Date.now() - started;
  log({ event: "done", ...result });
  try { sock?.close(); } catch {}
  setTimeout(() => process.exit(0), 100);
};
setTimeout(() => finish(`timed out after ${number("SOCKJS_TIMEOUT_MS", 30000)} ms`), number("SOCKJS_TIMEOUT_MS", 30000));

const websocketOptions = {};
if (origin) websocketOptions.headers = { Origin: origin };
if (insecure) websocketOptions.tls = { rejectUnauthorized: false };
sock = new SockJS(need("SOCKJS_URL"), null, {
  transports: [transport],
  transportOptions: { websocket: websocketOptions },
});

const body = (n) => String(n).padEnd(size, "abcdefghijklmnopqrstuvwxyz"[n % 26]);
let sent = 0;
const send = () => {
  if (finished || sent >= count) return;
  sock.send(body(sent++));
  if (sent < count) setTimeout(send, interval);
};
sock.onopen = () => {
  result.transport = sock.transport;
  log({ event: "open", transport: sock.transport, url: sock.url });
  if (count === 0) finish();
  else send();
};
sock.onmessage = (e) => {
  let m;
  try { m = JSON.parse(e.data); } catch { result.errors.push(`not JSON: ${String(e.data).slice(0, 80)}`); return; }
  const n = result.received;
  const intact = m.echo === body(n);
  if (!intact) result.intact = false;
  result.received += 1;
  result.backends[m.backend] = (result.backends[m.backend] ?? 0) + 1;
  log({ event: "echo", n, backend: m.backend, transport: sock.transport, server_transport: m.transport, intact });
  if (result.received === count) finish();
};
sock.onclose = (e) => {
  log({ event: "close", code: e.code, reason: e.reason });
  if (!finished) finish(`closed ${e.code} ${e.reason}`);
};
