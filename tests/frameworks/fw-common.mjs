// Shared helpers for the framework harness programs (sio-chat-*, sockjs-*, signalr-*) that
// scripts/frameworks-test.sh runs: module loading from the installed tree, env parsing, and
// the one-JSON-line-per-event output they all use.
//
// FW_NODE_MODULES (or SIO_NODE_MODULES, as tests/socketio.rs sets it) names the node_modules
// directory the scripts installed with `npm ci` (target/frameworks/node_modules).
import { createRequire } from "node:module";
import { join } from "node:path";

const modules = process.env.FW_NODE_MODULES || process.env.SIO_NODE_MODULES;
if (!modules) throw new Error("FW_NODE_MODULES is not set");
export const require = createRequire(join(modules, "/"));

export const env = (name, fallback) => {
  const value = process.env[name];
  return value === undefined || value === "" ? fallback : value;
};
export const need = (name) => {
  const value = env(name);
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
export const number = (name, fallback) => {
  const value = env(name);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new Error(`${name}=${value} is not a number`);
  return n;
};
export const flag = (name) => ["1", "true", "yes"].includes(String(env(name, "")).toLowerCase());
export const list = (name) => {
  const value = env(name);
  return value === undefined ? undefined : value.split(",").map((s) => s.trim()).filter(Boolean);
};

const started = Date.now();
// One JSON line per event; "t" is milliseconds since the program started, "at" wall-clock ms.
export const log = (event) =>
  process.stdout.write(JSON.stringify({ t: Date.now() - started, at: Date.now(), ...event }) + "\n");

// What a server logs for every HTTP request (upgrades included) it sees: the script counts
// these by the marker (the X-Test-Marker header or a "marker" query parameter) to tell
// whether a request the proxy should have refused reached the backend.
export const requestEvent = (req, extra = {}) => {
  let marker = req.headers["x-test-marker"];
  try {
    marker ??= new URL(req.url, "http://x").searchParams.get("marker") ?? undefined;
  } catch {}
  return {
    event: "request",
    method: req.method,
    url: req.url,
    origin: req.headers.origin ?? null,
    upgrade: req.headers.upgrade ?? null,
    marker: marker ?? null,
    ...extra,
  };
};

// Servers exit when stdin closes, so they never outlive the script that started them.
export const exitWithStdin = () => {
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
};
