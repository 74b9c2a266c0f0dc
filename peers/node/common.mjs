// Shared helpers for the Node `ws` peers: CLI parsing and the "listening" line.

/** Parse `--listen ADDR` / `--listen=ADDR` (default 127.0.0.1:8001) into {host, port}. */
export function parseListen(name, argv = process.argv.slice(2)) {
  let listen = '127.0.0.1:8001';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--listen' && i + 1 < argv.length) listen = argv[++i];
    else if (a.startsWith('--listen=')) listen = a.slice('--listen='.length);
    else usage(name);
  }
  // "ip:port", "host:port" or "[v6]:port".
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(listen) || /^([^:]+):(\d+)$/.exec(listen);
  if (!m) {
    process.stderr.write(`${name}: cannot parse listen address ${JSON.stringify(listen)}\n`);
    process.exit(2);
  }
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) usage(name);
  return { host: m[1], port };
}

function usage(name) {
  process.stderr.write(`usage: ${name} [--listen ADDR]   (default 127.0.0.1:8001; port 0 = ephemeral)\n`);
  process.exit(2);
}

/** Print exactly one line `<name> listening on <ip>:<port>` to stdout (synchronous for pipes/files). */
export function announce(name, wss) {
  const { address, family, port } = wss.address();
  const ip = family === 'IPv6' || family === 6 ? `[${address}]` : address;
  process.stdout.write(`${name} listening on ${ip}:${port}\n`);
}

/** Exit on listen errors (EADDRINUSE etc.) instead of hanging. */
export function dieOnServerError(name, wss) {
  wss.on('error', (err) => {
    process.stderr.write(`${name}: ${err.message}\n`);
    process.exit(1);
  });
}

// Listen backlog (ws passes it to net.Server#listen; the kernel caps it at somaxconn).
export const BACKLOG = 4096;
