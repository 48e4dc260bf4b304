import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { writeResult } from '../bench/results.js';
import { startMockSupplier } from '../mock-supplier.js';
import { checkHistory, type FaultWindow } from './checker.js';
import { Client } from './client.js';
import { clusterFaults } from './cluster-faults.js';
import { addSentinels, burst, type Fault, faults, type Rig, stalledSince, whenActive } from './faults.js';
import { createLoad, hotSku, locations, runAtRate, seededRandom, spreadSkus } from './load.js';
import { PlatformProcess, readProcfile } from './platform.js';
import { createPostgresCluster } from './postgres-cluster.js';
import { startWebhookReceiver } from './receiver.js';
import { RedisCluster } from './redis-cluster.js';
import { RedisServer, type Sentinels } from './redis-servers.js';
import { latencies, report, timeline } from './report.js';
import { startTcpProxy } from './tcp-proxy.js';

/**
 * `npm run test:faults`: the fault suite (docs/reliability.md). It builds a private platform on
 * loopback (a Postgres cluster, a Redis with AOF behind a TCP proxy it controls, two web and four
 * worker processes started as the Procfile starts them, a webhook receiver, a mock supplier),
 * runs a mixed load through both web processes at a fixed offered rate, injects the faults one
 * after another while it runs, and then lets the history checker judge. The last line printed is
 * machine-readable. Settings (environment): SEED (fixes the load and the schedule), REPEAT (each
 * fault N times), SHORT=1 (short fault windows), FAULT_RATE (operations/s, default 20), FAULTS
 * (a comma-separated subset), KEEP=1 (keep the run directory; it is kept anyway when a check fails),
 * TOPOLOGY=cluster (the platform on a Redis Cluster of 3 masters with a replica each, through
 * REDIS_CLUSTER_NODES: the single-Redis faults give way to the cluster's, `cluster-master-kill` and
 * `cluster-node-stall`; default `single`).
 */

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

async function freePort(): Promise<number> {
  const net = await import('node:net');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as import('node:net').AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** WEBHOOK_RETRY_SCHEDULE of the run (default jitter, 0.2). */
const retrySchedule = [1000, 2000, 5000, 10_000, 20_000, 30_000, 60_000, 120_000, 300_000];

const settings = {
  seed: Number(process.env.SEED ?? Math.floor(Math.random() * 1_000_000)),
  repeat: Math.max(1, Number(process.env.REPEAT ?? 1)),
  short: process.env.SHORT === '1' || process.env.SHORT === 'true',
  rate: Number(process.env.FAULT_RATE ?? (process.env.SHORT === '1' ? 10 : 20)),
  only: process.env.FAULTS?.split(',').filter(Boolean),
  keep: process.env.KEEP === '1',
  topology: process.env.TOPOLOGY ?? 'single',
};
if (settings.topology !== 'single' && settings.topology !== 'cluster') {
  console.error(`TOPOLOGY must be single or cluster, not ${settings.topology}`);
  process.exit(2);
}
const allFaults = [...faults, ...clusterFaults];

async function main(): Promise<number> {
  const startedAt = Date.now();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stockflow-faults-'));
  // Postgres runs as its own user when the suite runs as root: it must reach its directory.
  await chmod(dir, 0o755);
  const logs = path.join(dir, 'logs');
  await mkdir(logs);
  const notes: string[] = [];
  /** Progress on stdout; with `keep`, also a line of the report. */
  const note = (text: string, keep = false) => {
    if (keep) notes.push(text);
    console.log(`[faults +${((Date.now() - startedAt) / 1000).toFixed(0)}s] ${text}`);
  };
  note(
    `seed ${settings.seed}, repeat ${settings.repeat}, short ${settings.short}, rate ${settings.rate}/s, topology ${settings.topology}; run directory ${dir}`,
  );

  const cleanup: (() => Promise<unknown>)[] = [];
  let failed = true;
  try {
    // --- Services: Postgres, Redis (AOF always) behind a proxy, receiver, supplier behind a proxy.
    const pg = await createPostgresCluster(path.join(dir, 'pg'), await freePort());
    await pg.start();
    cleanup.push(() => pg.stop().catch(() => undefined));
    // TOPOLOGY=cluster: 3 masters with a replica each (AOF always), no proxy: a cluster client
    // connects to the addresses the nodes announce. `cluster-node-timeout` 3 s, as the sentinels' down-after.
    const cluster =
      settings.topology === 'cluster'
        ? await RedisCluster.create(path.join(dir, 'redis-cluster'), {
            masters: 3,
            replicas: 1,
            fsync: 'always',
            nodeTimeoutMs: 3000,
          })
        : undefined;
    if (cluster) {
      cleanup.push(() => cluster.stop());
      await cluster.start();
    }
    const redis =
      cluster?.nodes[0] ?? new RedisServer('redis-a', await freePort(), path.join(dir, 'redis-a'), 'always');
    const redisNodes = cluster ? [...cluster.nodes] : [redis];
    let sentinelsOf: () => Sentinels | undefined = () => undefined;
    if (!cluster) {
      await redis.start();
      cleanup.push(async () => {
        await sentinelsOf()?.stop();
        for (const node of redisNodes) await node.stop().catch(() => undefined);
      });
    }
    const redisProxy = cluster ? undefined : await startTcpProxy(redis.port);
    const receiver = await startWebhookReceiver();
    const supplierKey = `supplier-${randomBytes(6).toString('hex')}`;
    const supplier = await startMockSupplier({ apiKey: supplierKey });
    const supplierPort = Number(new URL(supplier.url).port);
    const supplierProxy = await startTcpProxy(supplierPort);
    cleanup.push(
      () => supplier.close(),
      () => receiver.close(),
      async () => redisProxy?.close(),
      () => supplierProxy.close(),
    );
    note(
      cluster
        ? `postgres :${pg.port} (max_connections 100), Redis Cluster ${cluster.addresses} (3 masters, a replica each)`
        : `postgres :${pg.port} (max_connections 100), redis :${redis.port} behind proxy :${redisProxy!.port}`,
    );

    // --- The release step and an admin key, as an operator runs them.
    const inboundSecret = `whsec_${randomBytes(32).toString('base64')}`;
    const env: Record<string, string> = {
      NODE_ENV: 'production',
      DATABASE_URL: pg.url('stockflow'),
      REDIS_URL: `redis://127.0.0.1:${redisProxy?.port ?? redis.port}`,
      ...(cluster ? { REDIS_CLUSTER_NODES: cluster.addresses } : {}),
      QUEUE_PREFIX: 'stockflow',
      SECRETS_KEY: randomBytes(32).toString('base64'),
      INBOUND_WEBHOOK_SECRET: inboundSecret,
      WEBHOOK_ALLOW_PRIVATE_TARGETS: 'true',
      SUPPLIER_ALLOW_PRIVATE_TARGETS: 'true',
      // A schedule that retries within the faults' windows (default 5s,5m,30m,…), and a sweep and a
      // draft resend that act within the run (defaults 2 min and 1 min).
      WEBHOOK_RETRY_SCHEDULE: retrySchedule.map((ms) => `${ms / 1000}s`).join(','),
      WEBHOOK_SWEEP_AFTER_MS: '20000',
      WEBHOOK_SWEEP_INTERVAL_MS: '5000',
      REORDER_DRAFT_RESEND_AFTER_MS: '20000',
      LOG_LEVEL: 'info',
    };
    const procfile = readProcfile(repoRoot);
    const release = procfile.get('release')!;
    await run(release.argv[0]!, release.argv.slice(1), {
      cwd: repoRoot,
      env: { PATH: process.env.PATH ?? '', ...env },
    });
    const { stdout } = await run(
      process.execPath,
      ['dist/scripts/keys.js', 'create', '--name', 'faults', '--scope', 'admin'],
      { cwd: repoRoot, env: { PATH: process.env.PATH ?? '', ...env } },
    );
    const adminKey = stdout.trim().split('\n').at(-1)!.trim();
    note(`release step (${release.argv.join(' ')}) done; admin key created with npm run keys`);

    // --- The processes of the Procfile: two web, two worker, one worker-images, one worker-webhooks.
    const webs: PlatformProcess[] = [];
    const workers: PlatformProcess[] = [];
    for (const i of [1, 2]) {
      const port = await freePort();
      webs.push(
        new PlatformProcess(
          `web-${i}`,
          procfile.get('web')!,
          { ...env, PORT: String(port) },
          repoRoot,
          logs,
          `http://127.0.0.1:${port}`,
        ),
      );
    }
    for (const [kind, name] of [
      ['worker', 'worker-1'],
      ['worker', 'worker-2'],
      ['worker-images', 'worker-images'],
      ['worker-webhooks', 'worker-webhooks'],
    ] as const) {
      workers.push(
        new PlatformProcess(
          name,
          procfile.get(kind)!,
          { ...env, METRICS_PORT: String(await freePort()) },
          repoRoot,
          logs,
        ),
      );
    }
    cleanup.push(async () => {
      for (const p of [...webs, ...workers]) {
        await p.terminate().catch(() => undefined);
        p.close();
      }
    });
    const firstReady: string[] = [];
    for (const p of [...webs, ...workers]) firstReady.push(`${p.name} ${await p.start()} ms`);
    note(`processes ready (pool ${10} connections each, default): ${firstReady.join(', ')}`, true);

    const client = new Client({
      webs: webs.map((w) => w.url!),
      apiKey: adminKey,
      giveUpMs: 120_000,
      pollForMs: 120_000,
    });
    const get = async (p: string) => {
      const answer = await client.read(p);
      if (!answer || answer.status >= 400) throw new Error(`GET ${p}: ${answer?.status ?? 'no answer'}`);
      return answer.body;
    };

    // --- Data: a second location, products with stock, a hot sku with little, a supplier with
    // reorder rules, and a webhook endpoint for every event.
    const setupOp = async (method: string, p: string, body: unknown) => {
      const op = await client.submit({
        kind: 'setup',
        method,
        path: p,
        body,
        key: `setup-${randomBytes(6).toString('hex')}`,
        wait: true,
      });
      if (op.outcome !== 'completed' && !(op.outcome === 'failed' && op.code === 'location_taken'))
        throw new Error(`setup ${method} ${p}: ${op.outcome} ${op.code ?? ''}`);
      return op;
    };
    await setupOp('POST', '/api/pms/locations', { code: 'north', name: 'North', priority: 10 });
    // One reorder sku per supplier fault, and one drawn down during the warm-up (orders flowing).
    const reorderSkus = Array.from({ length: settings.repeat + 1 }, (_, i) => `PO-${i + 1}`);
    for (const sku of [...spreadSkus, hotSku, ...reorderSkus])
      await setupOp('POST', '/api/pms/products', {
        sku,
        name: sku,
        price: { amount: 1999, currency: 'EUR' },
      });
    await setupOp('POST', '/api/pms/inventory/adjust', {
      movements: [
        ...spreadSkus.flatMap((sku) =>
          locations.map((location) => ({ sku, location, delta: 40, reason: 'received' })),
        ),
        { sku: hotSku, location: 'default', delta: 5, reason: 'received' },
        ...reorderSkus.map((sku) => ({ sku, location: 'default', delta: 100, reason: 'received' })),
      ],
    });
    const created = await client.call(0, 'POST', '/api/pms/suppliers', {
      body: JSON.stringify({
        code: 'acme',
        name: 'ACME',
        apiUrl: `http://127.0.0.1:${supplierProxy.port}/purchase-orders`,
        apiKey: supplierKey,
        leadTimeDays: 3,
      }),
      timeoutMs: 10_000,
    });
    if (created.answer?.status !== 201)
      throw new Error(`supplier: ${created.answer?.status} ${JSON.stringify(created.answer?.body)}`);
    for (const sku of reorderSkus)
      await setupOp('PUT', '/api/pms/inventory/reorder-rules', {
        sku,
        location: 'default',
        supplier: 'acme',
        reorderPoint: 50,
        maxLevel: 120,
      });
    const endpoint = await client.call(0, 'POST', '/api/webhooks/endpoints', {
      body: JSON.stringify({ url: receiver.url, eventTypes: ['*'], description: 'fault suite receiver' }),
      timeoutMs: 10_000,
    });
    if (endpoint.answer?.status !== 201) throw new Error(`endpoint: ${endpoint.answer?.status}`);
    const { id: endpointId, secret } = endpoint.answer.body as { id: string; secret: string };
    receiver.secret = secret;
    const endpointAfterSeq = ((await get('/api/pms/events?after=0&limit=1')) as { headSeq: number }).headSeq;
    note(
      `data set up: ${spreadSkus.length + 1 + reorderSkus.length} products, supplier, ${reorderSkus.length} reorder rule(s), endpoint`,
    );

    // --- Load, and the faults while it runs.
    const load = createLoad(client, { seed: settings.seed, inboundSecret });
    let reorderIndex = 0;
    const rig: Rig = {
      dir,
      pg,
      redis,
      redisNodes,
      redisProxy,
      cluster,
      supplierProxy,
      webs,
      workers,
      receiver,
      client,
      random: seededRandom(settings.seed + 1),
      short: settings.short,
      queuePrefix: 'stockflow',
      async triggerReorder() {
        const sku = reorderSkus[reorderIndex++ % reorderSkus.length]!;
        note(`drawing ${sku} below its reorder point`);
        await client.submit({
          kind: 'inventory.adjust',
          method: 'POST',
          path: '/api/pms/inventory/adjust',
          body: { movements: [{ sku, location: 'default', delta: -60, reason: 'damaged' }] },
          key: `reorder-${sku}-${Date.now()}`,
          wait: false,
        });
      },
      port: freePort,
      async rollingRestart(change, say) {
        const from = Date.now();
        for (const p of [...webs, ...workers]) {
          p.setEnv(change);
          // A worker of the Procfile's `worker` line stops with a burst of 100 jobs in flight.
          let active = 0;
          if (p.kind === 'worker') {
            burst(rig, 100, { wait: false });
            active = await whenActive(rig, ['inventory', 'products', 'orders'], 5, 2000);
          }
          const stopped = await p.terminate();
          const ready = await p.start();
          say(
            `graceful restart of ${p.name}${p.kind === 'worker' ? ` (100 jobs sent, ${active} active at SIGTERM)` : ''}: ` +
              `exit ${stopped.code} in ${stopped.ms} ms, ready again in ${ready} ms`,
            true,
          );
        }
        // Jobs a stopped worker left behind would stall once their locks expired (lock + stalled check).
        await sleep(22_000);
        say(`graceful restarts: ${await stalledSince(rig, from)} jobs stalled afterwards`, true);
      },
    };
    sentinelsOf = () => rig.sentinels;
    const loadStartedAt = Date.now();
    const loadRun = runAtRate(load.next, settings.rate);
    note(`load started at ${settings.rate} operations/s`);
    await rig.triggerReorder();
    await sleep(settings.short ? 10_000 : 20_000);

    const schedule = buildSchedule(seededRandom(settings.seed + 2));
    const windows: FaultWindow[] = [];
    const feed = { after: endpointAfterSeq };
    let onSentinels = false;
    for (const fault of schedule) {
      if (fault.sentinel && !onSentinels) {
        note('moving to Redis Sentinel: replica, three sentinels, rolling restart of every process');
        await addSentinels(rig, note);
        onSentinels = true;
        await sleep(5000);
      }
      note(`fault ${fault.name}`);
      const window = await fault.run(rig);
      windows.push(window);
      for (const text of window.notes) note(`  ${text}`);
      await settle(client, window, () => deliveredBefore(get, feed, receiver.receipts, window.healedAt));
      window.notes.push(`${await stalledSince(rig, window.at)} jobs stalled and were taken over`);
    }

    await sleep(5000);
    note('stopping the load; following every job to its end');
    await loadRun.stop();
    const loadSeconds = (Date.now() - loadStartedAt) / 1000;
    // Quiescence before judging: every acknowledged job ended (the client stops polling after
    // two minutes; a backlog may take longer), then every event delivered (retries, the sweep).
    const quietUntil = Date.now() + 300_000;
    for (;;) {
      const open = client.operations.filter((op) => op.outcome === 'unfinished' && op.ack?.jobId);
      const states = await Promise.all(
        open.slice(0, 200).map(async (op) => {
          const job = (await get(`/api/jobs/${op.ack!.jobId}`).catch(() => undefined)) as
            | {
                state?: string;
                finishedAt?: string | null;
                error?: { code?: string } | null;
                result?: unknown;
              }
            | undefined;
          if (job?.state === 'completed' || job?.state === 'failed') {
            op.outcome = job.state;
            op.finishedAt = job.finishedAt ? Date.parse(job.finishedAt) : Date.now();
            op.result = job.result;
            if (job.state === 'failed') op.code = job.error?.code ?? 'job_failed';
          }
          return job?.state;
        }),
      );
      const left = open.length - states.filter((st) => st === 'completed' || st === 'failed').length;
      if (left === 0 || Date.now() > quietUntil) {
        note(`jobs still unfinished after the load: ${left}`);
        break;
      }
      await sleep(2000);
    }
    const drainUntil = Date.now() + 120_000;
    for (;;) {
      const missing = await undelivered(get, endpointAfterSeq, receiver.receipts);
      if (missing === 0 || Date.now() > drainUntil) {
        note(`webhook drain: ${missing} events not yet delivered`);
        break;
      }
      await sleep(3000);
    }

    note(`checking the history (load average ${os.loadavg()[0]!.toFixed(1)})`, true);
    const verdict = await checkHistory({
      operations: client.operations,
      receipts: receiver.receipts,
      get,
      endpointId,
      endpointAfterSeq,
      supplierOrders: supplier.received,
      faults: windows,
      retrySchedule,
      retryJitter: 0.2,
      skus: [
        ...spreadSkus,
        hotSku,
        ...reorderSkus,
        ...load.world.products.filter((s) => s.startsWith('NEW-')),
      ],
    });
    const text = report({
      operations: client.operations,
      verdict,
      faults: windows,
      seconds: (Date.now() - startedAt) / 1000,
      rate: settings.rate,
      notes,
      deliveryRate: {
        events: verdict.webhookEvents,
        deliveries: receiver.receipts.filter((r) => r.status === 200).length,
        seconds: loadSeconds,
      },
    });
    await writeFile(path.join(dir, 'report.txt'), `${text}\n`);
    // For `npm run bench:report`: the load over time with each fault and its recovery.
    const lat = latencies(client.operations);
    // The cluster topology's run has a file of its own: the report's fault timeline stays the single Redis's.
    writeResult(settings.topology === 'cluster' ? 'faults-cluster' : 'faults', {
      kind: 'faults',
      at: new Date().toISOString(),
      seed: settings.seed,
      rate: settings.rate,
      startedAt: loadStartedAt,
      timeline: timeline(client.operations, loadStartedAt),
      faults: windows.map((w, i) => ({
        name: w.name,
        at: w.at,
        healedAt: w.healedAt,
        recoverySeconds: verdict.recovery[i]?.seconds ?? null,
        detail: verdict.recovery[i]?.detail ?? '',
      })),
      p50Ms: lat.p50,
      p99Ms: lat.p99,
      line: text.split('\n').at(-1) ?? '',
    });
    const jsonl = (items: unknown[]) => `${items.map((item) => JSON.stringify(item)).join('\n')}\n`;
    await writeFile(path.join(dir, 'history.jsonl'), jsonl(client.operations));
    await writeFile(path.join(dir, 'receipts.jsonl'), jsonl(receiver.receipts));
    await writeFile(path.join(dir, 'supplier.jsonl'), jsonl(supplier.received));
    console.log(`\n${text}`);
    failed =
      verdict.lost +
        verdict.doubleApplied +
        verdict.oversold +
        verdict.drift +
        verdict.webhookMissing +
        verdict.attemptsUnrecorded +
        verdict.poDuplicates >
        0 ||
      verdict.maxRecoverySeconds >= 30 ||
      verdict.recovery.some((r) => r.seconds === null);
    return failed ? 1 : 0;
  } catch (error) {
    console.error(`fault suite aborted: ${error instanceof Error ? error.stack : String(error)}`);
    return 2;
  } finally {
    for (const step of cleanup.reverse()) await step().catch(() => undefined);
    if (failed || settings.keep) console.error(`run directory kept: ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
}

/** How many events after `afterSeq` (webhook.* aside) the receiver has not taken with a 2xx yet. */
async function undelivered(
  get: (p: string) => Promise<unknown>,
  afterSeq: number,
  receipts: { webhookId: string; status: number }[],
): Promise<number> {
  const ok = new Set(receipts.filter((r) => r.status === 200).map((r) => r.webhookId));
  let after = afterSeq;
  let missing = 0;
  for (;;) {
    const page = (await get(`/api/pms/events?after=${after}&limit=1000`)) as {
      items: { id: string; type: string }[];
      nextAfter: number;
    };
    missing += page.items.filter((e) => !e.type.startsWith('webhook.') && !ok.has(e.id)).length;
    if (page.items.length === 0 || page.nextAfter === after) return missing;
    after = page.nextAfter;
  }
}

/** The faults in a seeded order, each REPEAT times; those on Sentinel come last (a topology change). */
function buildSchedule(random: () => number): Fault[] {
  const chosen = allFaults.filter(
    (f) =>
      (!settings.only || settings.only.includes(f.name)) &&
      (f.topology ?? settings.topology) === settings.topology,
  );
  const plain = chosen.filter((f) => !f.sentinel);
  const list: Fault[] = [];
  for (let r = 0; r < settings.repeat; r++) {
    const round = [...plain];
    for (let i = round.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [round[i], round[j]] = [round[j]!, round[i]!];
    }
    list.push(...round);
  }
  for (let r = 0; r < settings.repeat; r++) list.push(...chosen.filter((f) => f.sentinel));
  return list;
}

/**
 * Whether every event (webhook.* aside) that occurred before `before` has reached the receiver
 * with a 2xx. `feed.after` moves past the events found delivered, so each call reads on from there.
 */
async function deliveredBefore(
  get: (p: string) => Promise<unknown>,
  feed: { after: number },
  receipts: { webhookId: string; status: number }[],
  before: number,
): Promise<boolean> {
  const ok = new Set(receipts.filter((r) => r.status === 200).map((r) => r.webhookId));
  let after = feed.after;
  let allSoFar = true;
  for (;;) {
    const page = (await get(`/api/pms/events?after=${after}&limit=1000`)) as {
      items: { id: string; seq: number; type: string; occurredAt: string }[];
      nextAfter: number;
    };
    for (const e of page.items) {
      const due = Date.parse(e.occurredAt) < before && !e.type.startsWith('webhook.');
      if (due && !ok.has(e.id)) allSoFar = false;
      if (allSoFar) feed.after = e.seq;
    }
    if (page.items.length === 0 || page.nextAfter === after) return allSoFar;
    after = page.nextAfter;
  }
}

/**
 * Lets a fault recover before the next one starts, so that each recovery the checker measures is
 * its own: waits (at most 45 s) until every operation begun before the fault was healed has ended
 * (refused, failed or completed: its job followed to its end) and, for a webhook fault, every event
 * written before the heal has reached the receiver; then a little more. Without it the next fault
 * (a Redis stall of 60 s, a crash) began 3 s after a receiver's outage ended and held its
 * deliveries back, and the receiver's recovery read 78-80 s.
 */
async function settle(client: Client, window: FaultWindow, webhooksDelivered: () => Promise<boolean>) {
  const until = Date.now() + 45_000;
  while (Date.now() < until) {
    const open = client.operations.filter((op) => op.startedAt < window.healedAt && op.outcome === undefined);
    if (open.length === 0 && (window.measure !== 'webhooks' || (await webhooksDelivered()))) break;
    await sleep(500);
  }
  await sleep(3000);
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
