// Chat broadcast server on the `ws` package (benchmark peer for wsloop's `chat` mode).
//
// Protocol (identical to `wsloop chat`):
//   * users are numbered from 1 in join order;
//   * on join, text `user<N> come in!` goes to every open client, the joiner included;
//   * a text message T from user N is broadcast as text `user<N>: T` to every open
//     client, the sender included;
//   * a binary message is broadcast verbatim (binary) to every open client;
//   * on leave, text `user<N> left` goes to every open client.
// Broadcast uses ws's recommended style: iterate `wss.clients`, check
// `readyState === WebSocket.OPEN`, `client.send(data)`. permessage-deflate is off.
//
// Usage: node chat.mjs [--listen ADDR]   (default 127.0.0.1:8001; port 0 = ephemeral)
// Prints one line to stdout once listening: `node-ws-chat listening on <ip>:<port>`.
import { WebSocket, WebSocketServer } from 'ws';
import { parseListen, announce, dieOnServerError, BACKLOG } from './common.mjs';

const NAME = 'node-ws-chat';
const { host, port } = parseListen(NAME);

const wss = new WebSocketServer({ host, port, backlog: BACKLOG, perMessageDeflate: false });
dieOnServerError(NAME, wss);
wss.on('listening', () => announce(NAME, wss));

function broadcast(data, isBinary) {
  wss.clients.forEach((client) => {
    if (client.readyState === WebSocket.OPEN) {
      client.send(data, { binary: isBinary });
    }
  });
}

let nextUser = 1;

wss.on('connection', (ws) => {
  const id = nextUser++;
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      broadcast(data, true);
    } else {
      // Build the UTF-8 payload once and send the same Buffer to every client.
      broadcast(Buffer.concat([Buffer.from(`user${id}: `), data]), false);
    }
  });
  ws.on('close', () => {
    broadcast(`user${id} left`, false);
  });
  broadcast(`user${id} come in!`, false);
});
