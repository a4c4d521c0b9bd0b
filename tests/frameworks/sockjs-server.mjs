// A SockJS 0.3 echo chat backend for scripts/frameworks-test.sh. Every message comes back as
// {"backend","echo","transport","n"}: the backend's name, the message, the transport the server
// side sees (conn.protocol) and how many messages this connection has sent.
//
// Environment: FW_NODE_MODULES (see fw-common.mjs), FW_NAME (default "sockjs"), FW_PORT
// (default 0), SOCKJS_PREFIX (default "/sockjs"), SOCKJS_HEARTBEAT_MS (default SockJS's
// 25000), SOCKJS_RESPONSE_LIMIT (bytes one xhr-streaming response carries before the client
// must open another; default SockJS's 128 KiB).
//
// Stdout, one JSON line per event (each with "backend"): {"event":"listening","port"},
// {"event":"request",...} for every HTTP request and upgrade, {"event":"connection","id",
// "session","transport","url"} (SockJS hides Origin from conn.headers: see the request lines), {"event":"message","session","len","transport"},
// {"event":"close","session","transport","messages"}, {"event":"sockjs_log","severity","line"}
// for SockJS's own warnings and errors. Exits when stdin closes.
import { createServer } from "node:http";
import { env, exitWithStdin, log as emit, number, require, requestEvent } from "./fw-common.mjs";

const sockjs = require("sockjs");
const name = env("FW_NAME", "sockjs");
const log = (event) => emit({ backend: name, ...event });
const prefix = env("SOCKJS_PREFIX", "/sockjs");

const options = {
  prefix,
  log: (severity, line) => {
    if (severity !== "debug" && severity !== "info") log({ event: "sockjs_log", severity, line });
  },
};
if (number("SOCKJS_HEARTBEAT_MS") !== undefined) options.heartbeat_delay = number("SOCKJS_HEARTBEAT_MS");
if (number("SOCKJS_RESPONSE_LIMIT") !== undefined) options.response_limit = number("SOCKJS_RESPONSE_LIMIT");

const server = sockjs.createServer(options);
// The client's session id is the second path segment after the prefix:
// <prefix>/<server id>/<session id>/<transport>.
const sessionOf = (url) => (url ?? "").slice(prefix.length).split("/")[2] ?? null;

server.on("connection", (conn) => {
  const session = sessionOf(conn.url);
  let messages = 0;
  log({ event: "connection", id: conn.id, session, transport: conn.protocol, url: conn.url });
  conn.on("data", (data) => {
    messages += 1;
    log({ event: "message", session, len: data.length, transport: conn.protocol });
    conn.write(JSON.stringify({ backend: name, echo: data, transport: conn.protocol, n: messages }));
  });
  conn.on("close", () => log({ event: "close", session, transport: conn.protocol, messages }));
});

const http = createServer();
server.installHandlers(http);
// SockJS took over the "request" and "upgrade" listeners: log ahead of it.
http.prependListener("request", (req) => log(requestEvent(req, { session: sessionOf(req.url) })));
http.prependListener("upgrade", (req) => log(requestEvent(req, { session: sessionOf(req.url) })));
http.listen(number("FW_PORT", 0), "127.0.0.1", () => log({ event: "listening", port: http.address().port }));
exitWithStdin();
