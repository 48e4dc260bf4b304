/**
 * The suite's client: it behaves as docs/reliability.md tells a PMS to. Every mutation carries an
 * Idempotency-Key (a signed inbound webhook its webhook-id) and is sent again, unchanged, on a
 * connection error, a timeout, a 5xx or a 503 (after its Retry-After), to the next web process
 * (as a load balancer would); once acknowledged, its job is polled until it ends, and a job Redis
 * has forgotten (404) is submitted again with the same key. Every request and answer is kept: the
 * history the checker judges.
 */

/** One HTTP exchange of an operation. */
export interface Attempt {
  at: number;
  web: number;
  /** What it was: the submission or a poll of the job. */
  purpose: 'submit' | 'poll';
  status?: number;
  /** Network error or timeout. */
  error?: string;
  ms: number;
}

export type Outcome = 'completed' | 'failed' | 'refused' | 'abandoned' | 'unfinished';

/** One logical request of the load, from its first attempt to its job's end. */
export interface Operation {
  op: number;
  kind: string;
  method: string;
  path: string;
  key: string;
  wait: boolean;
  startedAt: number;
  attempts: Attempt[];
  /** The acknowledgement: 202, a `Prefer: wait` answer, or an inbound webhook's 2xx. */
  ack?: { at: number; status: number; jobId?: string; via: 'accepted' | 'waited' | 'inbound' };
  outcome?: Outcome;
  /** The domain code of a failed job, or the problem code of a refusal. */
  code?: string;
  /** When the job finished (the job's finishedAt, or when the waited answer came). */
  finishedAt?: number;
  result?: unknown;
  /** Times the job was submitted again because Redis no longer knew it (404), and when. */
  resubmits: number;
  resubmittedAt: number[];
}

export interface ClientOptions {
  webs: string[];
  apiKey: string;
  /** Give up on a request not acknowledged after this long (recorded as abandoned). */
  giveUpMs: number;
  /** Stop polling a job after this long (it stays `unfinished` for the checker). */
  pollForMs: number;
  onOperation?(op: Operation): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

export class Client {
  readonly operations: Operation[] = [];
  private next = 0;
  private rotate = 0;
  stopping = false;
  /** Requests open now, per web process. */
  readonly open: number[];

  constructor(private readonly options: ClientOptions) {
    this.open = options.webs.map(() => 0);
  }

  /** A single HTTP call to web process `web`; network errors and timeouts come back as `error`. */
  async call(
    web: number,
    method: string,
    path: string,
    init: { body?: string; headers?: Record<string, string>; timeoutMs: number; key?: string | null },
  ): Promise<{ answer?: Answer; error?: string; ms: number }> {
    const started = Date.now();
    this.open[web] = (this.open[web] ?? 0) + 1;
    try {
      const res = await fetch(`${this.options.webs[web]}${path}`, {
        method,
        body: init.body,
        headers: {
          ...(init.key === null ? {} : { authorization: `Bearer ${init.key ?? this.options.apiKey}` }),
          ...(init.body ? { 'content-type': 'application/json' } : {}),
          ...init.headers,
        },
        signal: AbortSignal.timeout(init.timeoutMs),
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        // not JSON
      }
      return { answer: { status: res.status, headers: res.headers, body }, ms: Date.now() - started };
    } catch (error) {
      const e = error as { name?: string; cause?: { code?: string }; message?: string };
      return { error: e.cause?.code ?? e.name ?? String(error), ms: Date.now() - started };
    } finally {
      this.open[web] = (this.open[web] ?? 1) - 1;
    }
  }

  /**
   * A read, retried like a mutation (reads need no key beyond the API key): on no answer, a 5xx or
   * a 429 (the checker's reads can outrun the key's RATE_LIMIT_PER_SECOND), after its Retry-After.
   */
  async read(path: string): Promise<Answer | undefined> {
    const deadline = Date.now() + this.options.giveUpMs;
    for (let attempt = 0; Date.now() < deadline && !this.stopping; attempt++) {
      const web = this.rotate++ % this.options.webs.length;
      const { answer } = await this.call(web, 'GET', path, { timeoutMs: 10_000 });
      if (answer && answer.status < 500 && answer.status !== 429) return answer;
      const retryAfter = Number(answer?.headers.get('retry-after'));
      await sleep(
        Number.isFinite(retryAfter) && retryAfter > 0
          ? Math.min(retryAfter * 1000, 5000)
          : Math.min(200 * 2 ** attempt, 2000),
      );
    }
    return undefined;
  }

  /**
   * Submits a mutation and follows it to its end. `headers(attempt)` gives the headers of each
   * attempt (inbound webhooks are signed again with a fresh timestamp, same webhook-id).
   */
  async submit(input: {
    kind: string;
    method: string;
    path: string;
    body?: unknown;
    key: string;
    wait: boolean;
    inbound?: (body: string) => Record<string, string>;
    /** The web process of the first attempt (default: round robin). */
    web?: number;
  }): Promise<Operation> {
    const op: Operation = {
      op: this.next++,
      kind: input.kind,
      method: input.method,
      path: input.path,
      key: input.key,
      wait: input.wait,
      startedAt: Date.now(),
      attempts: [],
      resubmits: 0,
      resubmittedAt: [],
    };
    this.operations.push(op);
    const body = input.body === undefined ? undefined : JSON.stringify(input.body);
    const acked = await this.acknowledge(op, input, body);
    if (acked && !op.outcome) await this.follow(op, input, body);
    if (!op.outcome) op.outcome = op.ack ? 'unfinished' : 'abandoned';
    this.options.onOperation?.(op);
    return op;
  }

  private async acknowledge(
    op: Operation,
    input: Parameters<Client['submit']>[0],
    body: string | undefined,
  ): Promise<boolean> {
    const deadline = Date.now() + this.options.giveUpMs;
    let web = input.web ?? op.op % this.options.webs.length;
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      const headers: Record<string, string> = input.inbound
        ? input.inbound(body ?? '')
        : { 'idempotency-key': input.key, ...(input.wait ? { prefer: 'wait=5' } : {}) };
      const at = Date.now();
      const { answer, error, ms } = await this.call(web, input.method, input.path, {
        body,
        headers,
        timeoutMs: input.wait ? 20_000 : 10_000,
        key: input.inbound ? null : undefined,
      });
      op.attempts.push({ at, web, purpose: 'submit', status: answer?.status, error, ms });
      if (answer && answer.status < 500 && answer.status !== 429) {
        this.settleAnswer(op, answer, at + ms, input.inbound !== undefined);
        return op.ack !== undefined;
      }
      // Retry: another web process (a load balancer would), after Retry-After or a short backoff.
      web = (web + 1) % this.options.webs.length;
      const retryAfter = Number(answer?.headers.get('retry-after'));
      await sleep(
        Number.isFinite(retryAfter) && retryAfter > 0
          ? Math.min(retryAfter * 1000, 5000)
          : Math.min(100 * 2 ** attempt, 2000),
      );
    }
    return false;
  }

  /** What an answer below 500 says: acknowledged (and maybe finished), or refused at intake. */
  private settleAnswer(op: Operation, answer: Answer, at: number, inbound: boolean): void {
    const body = (answer.body ?? {}) as Record<string, unknown>;
    const location = answer.headers.get('location') ?? '';
    const jobId = (typeof body.id === 'string' ? body.id : undefined) ?? location.split('/').pop();
    if (answer.status === 202 || (inbound && answer.status === 200)) {
      op.ack = { at, status: answer.status, jobId, via: inbound ? 'inbound' : 'accepted' };
      // A redelivered webhook-id the worker already applied: answered from Postgres.
      if (inbound && body.duplicate === true && body.state === 'completed') {
        op.outcome = 'completed';
        op.finishedAt = at;
      }
      return;
    }
    if (answer.headers.get('preference-applied')) {
      op.ack = { at, status: answer.status, jobId: location.split('/').pop(), via: 'waited' };
      op.finishedAt = at;
      if (answer.status < 300) {
        op.outcome = 'completed';
        op.result = answer.body;
      } else {
        op.outcome = 'failed';
        op.code = typeof body.code === 'string' ? body.code : `http_${answer.status}`;
      }
      return;
    }
    op.outcome = 'refused';
    op.code = typeof body.code === 'string' ? body.code : `http_${answer.status}`;
  }

  /** Polls the job until it ends; a job Redis forgot is submitted again with the same key. */
  private async follow(op: Operation, input: Parameters<Client['submit']>[0], body: string | undefined) {
    const deadline = Date.now() + this.options.pollForMs;
    let pause = 200;
    let web = (op.op + 1) % this.options.webs.length;
    while (Date.now() < deadline && op.ack?.jobId) {
      await sleep(pause);
      pause = Math.min(pause * 1.5, 2000);
      const at = Date.now();
      const { answer, error, ms } = await this.call(web, 'GET', `/api/jobs/${op.ack.jobId}`, {
        timeoutMs: 10_000,
        key: undefined,
      });
      op.attempts.push({ at, web, purpose: 'poll', status: answer?.status, error, ms });
      web = (web + 1) % this.options.webs.length;
      if (!answer || answer.status >= 500) continue;
      if (answer.status === 404) {
        // The job is gone from Redis (docs/reliability.md): send the request again, same key.
        if (op.resubmits >= 3) break;
        op.resubmits += 1;
        op.resubmittedAt.push(Date.now());
        op.ack = undefined;
        const acked = await this.acknowledge(op, input, body);
        if (!acked || op.outcome) return;
        pause = 200;
        continue;
      }
      const job = answer.body as {
        state?: string;
        finishedAt?: string | null;
        result?: unknown;
        error?: { code?: string } | null;
      };
      if (job.state === 'completed' || job.state === 'failed') {
        op.outcome = job.state;
        op.finishedAt = job.finishedAt ? Date.parse(job.finishedAt) : at;
        op.result = job.result;
        if (job.state === 'failed') op.code = job.error?.code ?? 'job_failed';
        return;
      }
    }
  }
}
