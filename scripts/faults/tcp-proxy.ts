import net from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 that the fault suite controls: it forwards bytes both ways until
 * `freeze()`, then stops forwarding without closing anything (a stalled link: no error, no answer;
 * new connections are accepted and held), and `thaw()` lets everything through again, the same
 * sockets included. When the upstream closes or refuses, the client side is closed too, so a
 * server killed behind the proxy looks killed to its clients.
 */
export interface TcpProxy {
  port: number;
  frozen: boolean;
  freeze(): void;
  thaw(): void;
  /** Points new connections elsewhere (existing ones keep their upstream). */
  retarget(port: number): void;
  close(): Promise<void>;
}

export async function startTcpProxy(upstreamPort: number, listenPort = 0): Promise<TcpProxy> {
  let target = upstreamPort;
  const pairs = new Set<{ client: net.Socket; upstream?: net.Socket; pending: Buffer[] }>();
  let frozen = false;
  const held: (() => void)[] = [];

  const connect = (pair: { client: net.Socket; upstream?: net.Socket; pending: Buffer[] }) => {
    const upstream = net.connect(target, '127.0.0.1');
    pair.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('connect', () => {
      for (const chunk of pair.pending) upstream.write(chunk);
      pair.pending = [];
    });
    upstream.on('data', (chunk) => pair.client.write(chunk));
    upstream.on('error', () => pair.client.destroy());
    upstream.on('close', () => pair.client.destroy());
    if (frozen) upstream.pause();
  };

  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const pair: { client: net.Socket; upstream?: net.Socket; pending: Buffer[] } = { client, pending: [] };
    pairs.add(pair);
    client.on('data', (chunk) => {
      if (pair.upstream && !pair.upstream.connecting) pair.upstream.write(chunk);
      else pair.pending.push(chunk);
    });
    client.on('error', () => pair.upstream?.destroy());
    client.on('close', () => {
      pair.upstream?.destroy();
      pairs.delete(pair);
    });
    if (frozen) {
      client.pause();
      held.push(() => connect(pair));
    } else connect(pair);
  });
  await new Promise<void>((resolve) => server.listen(listenPort, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    get frozen() {
      return frozen;
    },
    freeze() {
      frozen = true;
      for (const { client, upstream } of pairs) {
        client.pause();
        upstream?.pause();
      }
    },
    thaw() {
      frozen = false;
      for (const connectHeld of held.splice(0)) connectHeld();
      for (const { client, upstream } of pairs) {
        client.resume();
        upstream?.resume();
      }
    },
    retarget(port) {
      target = port;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const { client, upstream } of pairs) {
          client.destroy();
          upstream?.destroy();
        }
        server.close(() => resolve());
      }),
  };
}
