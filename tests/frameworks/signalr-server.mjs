// A SignalR-protocol hub server in Node for scripts/frameworks-test.sh, standing in for
// ASP.NET Core SignalR (no .NET on this machine). It follows the ASP.NET Core specs
// (src/SignalR/docs/specs/TransportProtocols.md and HubProtocol.md in dotnet/aspnetcore) for
// what the @microsoft/signalr client uses, with ASP.NET's defaults:
//
//   POST <hub>/negotiate[?negotiateVersion=N]  -> 200 {"negotiateVersion":min(N,1),
//        "connectionId", "connectionToken" (version 1 only), "availableTransports":
//        [WebSockets Text+Binary, LongPolling Text+Binary]}; other methods 405.
//   GET <hub>?id=<token> + Upgrade: websocket -> the WebSockets transport (no id: a new
//        connection without negotiate, as ASP.NET allows); unknown id 404; a connection that
//        already has a transport 409.
//   GET <hub>?id=<token> -> a long poll: the first one answers 200 with no body at once (it
//        starts the connection); later ones are held until there is something to send (200,
//        every queued record) or SIGNALR_POLL_TIMEOUT_MS passes (200, Content-Length 0;
//        ASP.NET's PollTimeout, 90 s). A new poll while one is held ends the old one with 204.
//        No id 400, unknown id 404, a WebSockets connection 400.
//   POST <hub>?id=<token> -> data from the client; 200 once processed. A second POST while one
//        is in progress 409; no id 400; unknown id 404; a WebSockets connection 405.
//   DELETE <hub>?id=<token> -> ends a LongPolling connection: the held poll gets 204, the
//        answer is 202; unknown id 404; a WebSockets connection 400.
//   A LongPolling connection with no poll for SIGNALR_DISCONNECT_TIMEOUT_MS (ASP.NET: 15 s) is
//   closed; a WebSockets connection silent for SIGNALR_CLIENT_TIMEOUT_MS (30 s) is closed.
//
// Hub protocol (JSON only, records end with 0x1E): the handshake {"protocol":"json",
// "version":1} is answered {} (another protocol: {"error":...} and the connection ends);
// over WebSockets the server pings ({"type":6}) every SIGNALR_KEEPALIVE_MS (15 s; LongPolling has
// inherent keep-alive, as in ASP.NET). Invocations (type 1):
//   "Echo"(x) with an invocationId -> Completion {"type":3,"result":{"backend","echo":x,
//       "transport","connectionId"}};
//   "Send"(x) without one -> an invocation back, {"type":1,"target":"echo","arguments":
//       [{"backend","echo":x,"transport","connectionId"}]};
//   any other target -> a Completion with an error, as ASP.NET answers an unknown method.
// Ping (6) only counts as traffic; Close (7) ends the connection; stream invocations (4) get an
// error Completion.
//
// Environment: FW_NODE_MODULES (see fw-common.mjs), FW_NAME (default "signalr"), FW_PORT
// (default 0), SIGNALR_HUB (default "/chathub"), and the timeouts above.
//
// Stdout, one JSON line per event (each with "backend"): "listening", "request" (every HTTP
// request and upgrade), "negotiate", "transport" (which one a connection took), "handshake",
// "invocation", "unknown_id" (a 404 for an id it never issued: a request routed to the wrong
// backend), "gone_id" (a 404 for a connection that ended here), "conflict" (409),
// "closed" (with the reason). Exits when stdin closes.
import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { env, exitWithStdin, log as emit, number, require, requestEvent } from "./fw-common.mjs";

const { WebSocketServer } = require("ws");
const name = env("FW_NAME", "signalr");
const log = (event) => emit({ backend: name, ...event });
const hub = env("SIGNALR_HUB", "/chathub").replace(/\/+$/, "");
const pollTimeout = number("SIGNALR_POLL_TIMEOUT_MS", 90000);
const disconnectTimeout = number("SIGNALR_DISCONNECT_TIMEOUT_MS", 15000);
const clientTimeout = number("SIGNALR_CLIENT_TIMEOUT_MS", 30000);
const keepAlive = number("SIGNALR_KEEPALIVE_MS", 15000);
const RS = "\x1e";

// 16 random bytes, base64url, as ASP.NET makes connection ids and tokens.
const newId = () => randomBytes(16).toString("base64url");

/** token -> connection */
const connections = new Map();
// Tokens of connections that ended here. A request for one still gets 404, as in ASP.NET (the
// client's stop can race its DELETE against a last POST), but is logged as "gone_id": only
// "unknown_id" means an id this backend never issued, i.e. a request routed to the wrong backend.
const gone = new Set();
const forget = (token) => {
  connections.delete(token);
  gone.add(token);
};
const missing = (method, id) => log({ event: gone.has(id) ? "gone_id" : "unknown_id", method, id });

class Connection {
  constructor(version) {
    this.connectionId = newId();
    this.token = version >= 1 ? newId() : this.connectionId;
    this.transport = null; // "WebSockets" | "LongPolling"
    this.handshaken = false;
    this.input = ""; // text received, up to a record separator
    this.queue = []; // records waiting for a poll (LongPolling)
    this.poll = null; // the held long-poll response
    this.pollTimer = null;
    this.posting = false;
    this.ws = null;
    this.closed = false;
    this.lastSeen = Date.now();
    this.lastPoll = Date.now();
    connections.set(this.token, this);
  }

  send(message) {
    if (this.closed) return;
    const record = JSON.stringify(message) + RS;
    if (this.transport === "WebSockets") this.ws.send(record);
    else {
      this.queue.push(record);
      this.flushPoll();
    }
  }

  flushPoll() {
    if (!this.poll || this.queue.length === 0) return;
    const body = this.queue.join("");
    this.queue = [];
    const res = this.poll;
    this.endPoll();
    res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": Buffer.byteLength(body) });
    res.end(body);
  }

  endPoll(status) {
    clearTimeout(this.pollTimer);
    const res = this.poll;
    this.poll = null;
    this.lastPoll = Date.now();
    if (res && status) {
      res.writeHead(status, { "Content-Length": 0 });
      res.end();
    }
  }

  receive(text) {
    this.lastSeen = Date.now();
    this.input += text;
    let at;
    while ((at = this.input.indexOf(RS)) >= 0) {
      const record = this.input.slice(0, at);
      this.input = this.input.slice(at + 1);
      let message;
      try {
        message = JSON.parse(record);
      } catch {
        this.close(`not JSON: ${record.slice(0, 60)}`, { type: 7, error: "Connection closed with an error. InvalidDataException: Invalid JSON." });
        return;
      }
      if (!this.handshaken) this.handshake(message);
      else this.dispatch(message);
      if (this.closed) return;
    }
  }

  handshake(request) {
    if (request.protocol !== "json" || request.version !== 1) {
      const error = `The protocol '${request.protocol}' version ${request.version} is not supported.`;
      this.sendRaw(JSON.stringify({ error }) + RS);
      this.close(`handshake refused: ${error}`);
      return;
    }
    this.handshaken = true;
    log({ event: "handshake", connectionId: this.connectionId, transport: this.transport, protocol: request.protocol });
    this.sendRaw("{}" + RS);
  }

  sendRaw(record) {
    if (this.transport === "WebSockets") this.ws.send(record);
    else {
      this.queue.push(record);
      this.flushPoll();
    }
  }

  dispatch(message) {
    const about = { backend: name, transport: this.transport, connectionId: this.connectionId };
    switch (message.type) {
      case 1: {
        const argument = message.arguments?.[0];
        log({ event: "invocation", connectionId: this.connectionId, target: message.target, invocationId: message.invocationId ?? null, len: typeof argument === "string" ? argument.length : null, transport: this.transport });
        if (message.target === "Echo" && message.invocationId !== undefined) {
          this.send({ type: 3, invocationId: message.invocationId, result: { ...about, echo: argument } });
        } else if (message.target === "Send") {
          this.send({ type: 1, target: "echo", arguments: [{ ...about, echo: argument }] });
          if (message.invocationId !== undefined) this.send({ type: 3, invocationId: message.invocationId, result: null });
        } else if (message.invocationId !== undefined) {
          this.send({ type: 3, invocationId: message.invocationId, error: `Failed to invoke '${message.target}' due to an error on the server. HubException: Method does not exist.` });
        }
        break;
      }
      case 4:
        this.send({ type: 3, invocationId: message.invocationId, error: `Failed to invoke '${message.target}' due to an error on the server. HubException: Method does not exist.` });
        break;
      case 5:
      case 6:
        break;
      case 7:
        this.close(`client sent close${message.error ? `: ${message.error}` : ""}`);
        break;
      default:
        log({ event: "unknown_message", connectionId: this.connectionId, type: message.type ?? null });
    }
  }

  close(reason, closeMessage) {
    if (this.closed) return;
    if (closeMessage) this.send(closeMessage);
    this.closed = true;
    // A LongPolling client that sent Close still DELETEs: keep the id a while for that (202),
    // as ASP.NET keeps the connection until its transport ends.
    if (this.transport === "LongPolling" && reason !== "DELETE") setTimeout(() => forget(this.token), 5000).unref();
    else forget(this.token);
    clearInterval(this.pinger);
    log({ event: "closed", connectionId: this.connectionId, transport: this.transport, reason });
    if (this.transport === "WebSockets") this.ws?.close(1000);
    else if (this.poll) {
      // Records queued (a close message) are flushed with the 204's body cut: send them as 200.
      if (this.queue.length) {
        const body = this.queue.join("");
        const res = this.poll;
        this.endPoll();
        res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": Buffer.byteLength(body) });
        res.end(body);
      } else this.endPoll(204);
    }
  }
}

const idOf = (url) => url.searchParams.get("id");
const answer = (res, status, text = "", headers = {}) => {
  res.writeHead(status, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(text);
};

const http = createServer((req, res) => {
  log(requestEvent(req));
  const url = new URL(req.url, "http://localhost");
  const path = url.pathname.replace(/\/+$/, "");
  if (path === `${hub}/negotiate`) return negotiate(req, res, url);
  if (path !== hub) return answer(res, 404);
  const id = idOf(url);
  if (!id) return answer(res, 400, "Connection ID required");
  const connection = connections.get(id);
  if (!connection) {
    missing(req.method, id);
    return answer(res, 404, "No Connection with that ID");
  }
  if (connection.closed) {
    if (req.method === "DELETE") return answer(res, 202);
    if (req.method === "GET") return answer(res, 204);
    return answer(res, 404, "No Connection with that ID");
  }
  if (req.method === "GET") return longPoll(connection, req, res);
  if (req.method === "POST") return post(connection, req, res);
  if (req.method === "DELETE") {
    if (connection.transport !== "LongPolling") return answer(res, 400, "Cannot terminate this connection using the DELETE endpoint.");
    connection.close("DELETE");
    return answer(res, 202);
  }
  return answer(res, 405, "", { Allow: "GET, POST, DELETE" });
});

function negotiate(req, res, url) {
  if (req.method !== "POST") return answer(res, 405, "", { Allow: "POST" });
  const requested = Number(url.searchParams.get("negotiateVersion") ?? 0);
  const version = Math.max(0, Math.min(Number.isInteger(requested) ? requested : 0, 1));
  // Drain the (empty) body before answering.
  req.resume();
  req.on("end", () => {
    const connection = new Connection(version);
    const body = { negotiateVersion: version, connectionId: connection.connectionId };
    if (version >= 1) body.connectionToken = connection.token;
    body.availableTransports = [
      { transport: "WebSockets", transferFormats: ["Text", "Binary"] },
      { transport: "LongPolling", transferFormats: ["Text", "Binary"] },
    ];
    log({ event: "negotiate", version, connectionId: connection.connectionId, token: connection.token, origin: req.headers.origin ?? null });
    const text = JSON.stringify(body);
    res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
    res.end(text);
  });
}

function longPoll(connection, req, res) {
  if (connection.transport === "WebSockets") return answer(res, 400, "Cannot change transports mid-connection");
  connection.lastPoll = Date.now();
  if (connection.transport === null) {
    connection.transport = "LongPolling";
    log({ event: "transport", connectionId: connection.connectionId, transport: "LongPolling" });
    res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": 0 });
    return res.end();
  }
  // A new poll takes over from a held one, which ends with 204.
  if (connection.poll) connection.endPoll(204);
  connection.poll = res;
  res.on("close", () => {
    if (connection.poll === res) connection.endPoll();
  });
  connection.pollTimer = setTimeout(() => {
    if (connection.poll === res) {
      connection.endPoll();
      res.writeHead(200, { "Content-Type": "application/octet-stream", "Content-Length": 0 });
      res.end();
    }
  }, pollTimeout);
  connection.flushPoll();
}

function post(connection, req, res) {
  if (connection.transport === "WebSockets") return answer(res, 405, "POST requests are not allowed for WebSocket connections.");
  if (connection.posting) {
    log({ event: "conflict", connectionId: connection.connectionId, method: "POST" });
    return answer(res, 409, "Another send request is in progress.");
  }
  connection.posting = true;
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    connection.posting = false;
    connection.receive(Buffer.concat(chunks).toString("utf8"));
    answer(res, 200);
  });
  req.on("error", () => (connection.posting = false));
}

const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 * 1024 });
http.on("upgrade", (req, socket, head) => {
  log(requestEvent(req));
  const refuse = (status, text) => {
    socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
  };
  const url = new URL(req.url, "http://localhost");
  if (url.pathname.replace(/\/+$/, "") !== hub) return refuse(404, "Not Found");
  const id = idOf(url);
  let connection;
  if (id === null) connection = new Connection(1);
  else {
    connection = connections.get(id);
    if (!connection) {
      missing("GET (upgrade)", id);
      return refuse(404, "Not Found");
    }
    if (connection.transport !== null) {
      log({ event: "conflict", connectionId: connection.connectionId, method: "GET (upgrade)" });
      return refuse(409, "Conflict");
    }
  }
  connection.transport = "WebSockets";
  wss.handleUpgrade(req, socket, head, (ws) => {
    connection.ws = ws;
    log({ event: "transport", connectionId: connection.connectionId, transport: "WebSockets" });
    ws.on("message", (data, binary) => connection.receive(binary ? data.toString("utf8") : data.toString()));
    ws.on("close", (code) => connection.close(`websocket closed ${code}`));
    ws.on("error", () => {});
    connection.pinger = setInterval(() => {
      if (!connection.handshaken) return;
      if (Date.now() - connection.lastSeen > clientTimeout) {
        connection.close("client timeout");
        return;
      }
      connection.send({ type: 6 });
    }, Math.min(keepAlive, clientTimeout));
  });
});

// LongPolling connections whose client stopped polling go after disconnectTimeout, as
// ASP.NET's connection manager drops them.
setInterval(() => {
  for (const connection of connections.values()) {
    const idle = Date.now() - connection.lastPoll;
    if (connection.transport !== "WebSockets" && !connection.poll && idle > disconnectTimeout) {
      connection.close(`no poll for ${idle} ms`);
    }
  }
}, 1000).unref();

http.listen(number("FW_PORT", 0), "127.0.0.1", () => log({ event: "listening", port: http.address().port }));
exitWithStdin();
