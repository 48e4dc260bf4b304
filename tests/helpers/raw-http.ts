import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Sends one HTTP/1.1 request over a plain TCP socket with the request-target exactly as given
 * (encoded paths, absolute-form, `//`, `..`): what an attacker's client sends, which neither
 * `app.inject()` nor `http.request` would pass through untouched.
 */
export function rawRequest(
  port: number,
  options: {
    method: string;
    target: string;
    /** A `null` value leaves that header out (e.g. the default content-type of a body). */
    headers?: Record<string, string | null>;
    body?: string;
  },
  timeoutMs = 10_000,
): Promise<RawResponse> {
  const body = options.body ?? '';
  const headers: Record<string, string | null> = {
    host: `127.0.0.1:${port}`,
    connection: 'close',
    ...(body
      ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }
      : {}),
    ...options.headers,
  };
  const head = [
    `${options.method} ${options.target} HTTP/1.1`,
    ...Object.entries(headers).flatMap(([name, value]) => (value === null ? [] : [`${name}: ${value}`])),
  ].join('\r\n');
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer to ${options.method} ${options.target} within ${timeoutMs} ms`));
    }, timeoutMs);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const [statusLine, ...lines] = text.slice(0, end < 0 ? text.length : end).split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1]);
      if (!status) {
        reject(new Error(`no HTTP status line in the answer to ${options.target}: ${text.slice(0, 200)}`));
        return;
      }
      const parsed: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        if (colon > 0) parsed[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status, headers: parsed, body: end < 0 ? '' : text.slice(end + 4) });
    };
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      // An upgrade that succeeded keeps the socket open: the status line is all we need.
      if (Buffer.concat(chunks).toString('latin1').startsWith('HTTP/1.1 101')) {
        socket.destroy();
        finish();
      }
    });
    socket.on('end', finish);
    socket.on('error', (error) => {
      clearTimeout(timer);
      if (chunks.length > 0) finish();
      else reject(error);
    });
    socket.write(`${head}\r\n\r\n${body}`);
  });
}
