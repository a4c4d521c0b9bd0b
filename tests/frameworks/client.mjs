// A Socket.IO client for tests/socketio.rs: connects over WebSocket only (wsguard does not
// proxy HTTP long-polling), emits SIO_COUNT "msg" events of SIO_SIZE characters at once, and
// waits for as many "echo" events.
//
// Environment: SIO_NODE_MODULES (where scripts/test.sh installed socket.io-client), SIO_URL
// (https://...), SIO_CA (PEM file trusted for it), SIO_ORIGIN (the Origin header sent),
// SIO_COUNT (default 1), SIO_SIZE (default 16), SIO_TIMEOUT_MS (default 15000).
//
// Stdout: one JSON line, {"received":N,"expected":N,"intact":bool,"disconnects":[...],
// "errors":[...],"ms":N}, then exit 0 however it went: the test judges the result.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const need = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const require = createRequire(join(need("SIO_NODE_MODULES"), "/"));
const { io } = require("socket.io-client");

const count = Number(process.env.SIO_COUNT || 1);
const size = Number(process.env.SIO_SIZE || 16);
const timeoutMs = Number(process.env.SIO_TIMEOUT_MS || 15000);

const started = Date.now();
const result = { received: 0, expected: count, intact: true, disconnects: [], errors: [] };
const finish = () => {
  result.ms = Date.now() - started;
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(0);
};
setTimeout(() => {
  result.errors.push(`timed out after ${timeoutMs} ms`);
  finish();
}, timeoutMs);

const socket = io(need("SIO_URL"), {
  transports: ["websocket"],
  extraHeaders: { Origin: need("SIO_ORIGIN") },
  ca: readFileSync(need("SIO_CA")),
  // One attempt: a refused or dropped connection is a result, not something to retry.
  reconnection: false,
});

// Each message is its index padded with "x" to `size`, so a lost, reordered or damaged echo shows.
const message = (i) => String(i).padEnd(size, "x");

socket.on("connect", () => {
  for (let i = 0; i < count; i++) socket.emit("msg", message(i));
});
socket.on("echo", (m) => {
  if (m !== message(result.received)) result.intact = false;
  result.received += 1;
  if (result.received === count) finish();
});
socket.on("connect_error", (e) => {
  result.errors.push(`connect_error: ${e.message}`);
  finish();
});
socket.on("disconnect", (reason) => {
  result.disconnects.push(reason);
  finish();
});
