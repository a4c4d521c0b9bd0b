// A stock Socket.IO 4.8 chat backend for scripts/frameworks-test.sh: DEFAULT server options
// (transports polling + websocket, upgrades allowed, default pingInterval/pingTimeout and
// maxHttpBufferSize unless overridden below), so it behaves as a real deployment does behind
// wsguard's HTTP pass-through.
//
// Every "chat" event is acked with {backend, n, len, body, transport}: the backend's name, the
// message's number and length, the body echoed back and the transport in use. Every chat is
// also broadcast to the other sockets as "chat" (a chat room), unless SIO_NO_BROADCAST is set.
//
// Environment: FW_NODE_MODULES (see fw-common.mjs), FW_NAME (the backend's name in logs and
// acks, default "sio"), FW_PORT (default 0: any free port), SIO_PATH (default "/socket.io/"),
// SIO_PING_INTERVAL / SIO_PING_TIMEOUT (ms), SIO_MAX_BUFFER (bytes), SIO_NO_BROADCAST,
// SIO_CORS ("*" or a comma list of origins: Socket.IO's `cors` option, so a page from another
// origin can read the polling answers; scripts/browser-test.sh sets "*", a backend that serves
// any origin, leaving wsguard's [origin] allow the only gate).
//
// Stdout, one JSON line per event (each with "backend", "t" and "at"):
//   {"event":"listening","port":N}
//   {"event":"request","method","url","origin","upgrade","marker"}   every HTTP request seen
//   {"event":"connection","sid","transport"}  {"event":"upgrade","sid","from","to"}
//   {"event":"chat","sid","n","len","transport"}
//   {"event":"connection_error","code","message","url","origin"}  e.g. "Session ID unknown"
//   {"event":"disconnect","sid","reason","upgraded","transport"}
// Exits when stdin closes.
import { createServer } from "node:http";
import { env, exitWithStdin, flag, list, log as emit, number, require, requestEvent } from "./fw-common.mjs";

const { Server } = require("socket.io");
const name = env("FW_NAME", "sio");
const log = (event) => emit({ backend: name, ...event });

const options = {};
if (env("SIO_PATH")) options.path = env("SIO_PATH");
for (const [key, variable] of [
  ["pingInterval", "SIO_PING_INTERVAL"],
  ["pingTimeout", "SIO_PING_TIMEOUT"],
  ["maxHttpBufferSize", "SIO_MAX_BUFFER"],
]) {
  if (number(variable) !== undefined) options[key] = number(variable);
}

if (env("SIO_CORS")) options.cors = { origin: env("SIO_CORS") === "*" ? "*" : list("SIO_CORS") };

const http = createServer();
const io = new Server(http, options);
// Engine.IO took over the "request" and "upgrade" listeners: log ahead of it.
http.prependListener("request", (req) => log(requestEvent(req)));
http.prependListener("upgrade", (req) => log(requestEvent(req)));

io.engine.on("connection_error", (e) =>
  log({
    event: "connection_error",
    code: e.code,
    message: e.message,
    context: e.context ?? null,
    method: e.req?.method ?? null,
    url: e.req?.url ?? null,
    origin: e.req?.headers?.origin ?? null,
  }),
);

io.on("connection", (socket) => {
  const conn = socket.conn;
  const sid = conn.id;
  let upgraded = false;
  log({ event: "connection", sid, transport: conn.transport.name, origin: socket.handshake.headers.origin ?? null });
  conn.on("upgrade", (transport) => {
    upgraded = true;
    log({ event: "upgrade", sid, from: "polling", to: transport.name });
  });
  socket.on("chat", (message, ack) => {
    const body = typeof message?.body === "string" ? message.body : "";
    log({ event: "chat", sid, n: message?.n ?? null, len: body.length, transport: conn.transport.name });
    if (!flag("SIO_NO_BROADCAST")) socket.broadcast.emit("chat", { backend: name, n: message?.n, len: body.length });
    if (typeof ack === "function") {
      ack({ backend: name, n: message?.n ?? null, len: body.length, body, transport: conn.transport.name });
    }
  });
  socket.on("disconnect", (reason) =>
    log({ event: "disconnect", sid, reason, upgraded, transport: conn.transport?.name ?? null }),
  );
});

http.listen(number("FW_PORT", 0), "127.0.0.1", () => log({ event: "listening", port: http.address().port }));
exitWithStdin();
