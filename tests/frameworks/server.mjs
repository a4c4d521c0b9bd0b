// A Socket.IO echo server for tests/socketio.rs: every "msg" comes back as "echo".
//
// Environment: SIO_NODE_MODULES (where scripts/test.sh installed socket.io), SIO_PORT (default 0,
// any free port), SIO_PING_INTERVAL and SIO_PING_TIMEOUT (ms, Socket.IO's defaults when unset),
// SIO_TRANSPORTS (comma-separated, default "websocket"), SIO_MAX_BUFFER (bytes, largest
// message accepted; Socket.IO's default of 1e6 is under a 1,000,000-byte string once framed).
//
// Stdout: one JSON line per event ({"event":"listening","port":N}, "connection",
// {"event":"disconnect","reason":"ping timeout"}). Exits when stdin closes, so it never
// outlives the test that started it.
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { join } from "node:path";

const modules = process.env.SIO_NODE_MODULES;
if (!modules) throw new Error("SIO_NODE_MODULES is not set");
const require = createRequire(join(modules, "/"));
const { Server } = require("socket.io");

const number = (name) => (process.env[name] ? Number(process.env[name]) : undefined);
const log = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const options = {
  transports: (process.env.SIO_TRANSPORTS || "websocket").split(","),
  maxHttpBufferSize: number("SIO_MAX_BUFFER") ?? 2e6,
};
for (const [key, name] of [["pingInterval", "SIO_PING_INTERVAL"], ["pingTimeout", "SIO_PING_TIMEOUT"]]) {
  if (number(name) !== undefined) options[key] = number(name);
}

const http = createServer();
const io = new Server(http, options);
io.on("connection", (socket) => {
  log({ event: "connection" });
  socket.on("msg", (m) => socket.emit("echo", m));
  socket.on("disconnect", (reason) => log({ event: "disconnect", reason }));
});

http.listen(number("SIO_PORT") ?? 0, "127.0.0.1", () => {
  log({ event: "listening", port: http.address().port });
});

process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
