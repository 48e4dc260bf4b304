import http from 'node:http';

export interface SseMessage {
  id?: string;
  data: string;
}

/** A minimal EventSource for tests: records events, comments, and the last event id as a browser keeps it. */
export interface SseClient {
  status: Promise<number>;
  events: SseMessage[];
  comments: string[];
  lastEventId: string | undefined;
  ended: Promise<void>;
  waitFor(predicate: (c: SseClient) => boolean, timeoutMs?: number): Promise<void>;
  close(): void;
}

export function openSse(url: string, headers: Record<string, string> = {}): SseClient {
  let resolveStatus!: (n: number) => void;
  let resolveEnded!: () => void;
  const client: SseClient = {
    status: new Promise((r) => {
      resolveStatus = r;
    }),
    events: [],
    comments: [],
    lastEventId: headers['last-event-id'],
    ended: new Promise((r) => {
      resolveEnded = r;
    }),
    async waitFor(predicate, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(client)) {
        if (Date.now() > deadline) {
          throw new Error(`SSE condition not met within ${timeoutMs} ms (${client.events.length} events)`);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    close() {
      request.destroy();
    },
  };
  const request = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, (response) => {
    resolveStatus(response.statusCode ?? 0);
    response.setEncoding('utf8');
    let buffer = '';
    let data: string[] = [];
    let id: string | undefined;
    response.on('data', (chunk: string) => {
      buffer += chunk;
      let newline = buffer.indexOf('\n');
      while (newline >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, '');
        buffer = buffer.slice(newline + 1);
        if (line === '') {
          if (id !== undefined) client.lastEventId = id;
          if (data.length > 0) client.events.push({ id, data: data.join('\n') });
          data = [];
          id = undefined;
        } else if (line.startsWith(':')) {
          client.comments.push(line.slice(1).trim());
        } else {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'data') data.push(value);
          if (field === 'id') id = value;
        }
        newline = buffer.indexOf('\n');
      }
    });
    response.on('close', () => resolveEnded());
  });
  request.on('error', () => {
    resolveStatus(0);
    resolveEnded();
  });
  return client;
}
