// Echo server on the `ws` package (benchmark peer for wsloop).
//
// Every text/binary message is sent back with the same opcode; ws itself answers
// pings (autoPong, default on) and replies to a close frame. permessage-deflate is
// off (ws's server default, made explicit). ws sets TCP_NODELAY on every socket.
//
// Usage: node echo.mjs [--listen ADDR]   (default 127.0.0.1:8001; port 0 = ephemeral)
// Prints one line to stdout once listening: `node-ws-echo listening on <ip>:<port>`.
import { WebSocketServer } from 'ws';
import { parseListen, announce, dieOnServerError, BACKLOG } from './common.mjs';

const NAME = 'node-ws-echo';
const { host, port } = parseListen(NAME);

const wss = new WebSocketServer({ host, port, backlog: BACKLOG, perMessageDeflate: false });
dieOnServerError(NAME, wss);
wss.on('listening', () => announce(NAME, wss));

wss.on('connection', (ws) => {
  // Protocol errors close the connection; without a listener they would crash the process.
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
});
