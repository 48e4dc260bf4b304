import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/context.js';

/**
 * The layers of docs/architecture.md ("Layers and what may import what"), checked on every import
 * of src/: a forbidden arrow fails here, naming the file and the import.
 */

interface Import {
  file: string;
  /** A repository path (`src/domain/products.ts`) or a package name (`fastify`). */
  target: string;
  names: string[];
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(repoRoot, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return sourceFiles(relative);
    return entry.name.endsWith('.ts') ? [relative] : [];
  });
}

function importsOf(file: string): Import[] {
  const text = readFileSync(path.join(repoRoot, file), 'utf8');
  return [...text.matchAll(/^import\s+(type\s+)?([\s\S]*?)\s+from\s+'([^']+)';/gm)].map((m) => {
    const specifier = m[3]!;
    const target = specifier.startsWith('.')
      ? path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)).replace(/\.js$/, '.ts')
      : specifier
          .split('/')
          .slice(0, specifier.startsWith('@') ? 2 : 1)
          .join('/');
    const named = /\{([\s\S]*)\}/.exec(m[2]!)?.[1] ?? '';
    const names = named
      .split(',')
      .map((n) => n.trim())
      .filter((n) => n && !n.startsWith('type '))
      .map((n) => n.split(/\s+as\s+/)[0]!);
    return { file, target, names, typeOnly: Boolean(m[1]) || (named !== '' && names.length === 0) };
  });
}

const imports = sourceFiles('src').flatMap(importsOf);
const under = (prefix: string) => (p: string) => p.startsWith(prefix);
const http = (target: string) =>
  ['fastify', 'fastify-type-provider-zod', 'find-my-way'].includes(target) ||
  target.startsWith('@fastify/') ||
  target.startsWith('@bull-board/');

/** Each rule: files it applies to, and what they may not import (value imports unless `types` too). */
const rules: { name: string; from: (file: string) => boolean; forbids: (i: Import) => boolean }[] = [
  {
    name: 'only src/api knows HTTP: nothing else imports Fastify, its plugins, Bull Board or src/api',
    from: (f) => !f.startsWith('src/api/'),
    forbids: (i) => http(i.target) || i.target.startsWith('src/api/'),
  },
  {
    name: 'the workers are the top of the stack: nothing in src/ imports src/workers',
    from: (f) => !f.startsWith('src/workers/'),
    forbids: (i) => i.target.startsWith('src/workers/'),
  },
  {
    name: 'the API never runs jobs or imports what they need (sharp, cloudinary, the image pipeline)',
    from: under('src/api/'),
    forbids: (i) =>
      i.target.startsWith('src/workers/') ||
      ['sharp', 'cloudinary'].includes(i.target) ||
      ['src/images/pipeline.ts', 'src/images/storage.ts', 'src/images/cloudinary-storage.ts'].includes(
        i.target,
      ),
  },
  {
    name: 'the domain knows no queue, worker, webhook or HTTP (types of job payloads excepted)',
    from: under('src/domain/'),
    forbids: (i) =>
      ['src/workers/', 'src/webhooks/', 'src/api/'].some((p) => i.target.startsWith(p)) ||
      (i.target.startsWith('src/queues/') && !i.typeOnly) ||
      i.target === 'bullmq',
  },
  {
    name: 'job declarations (src/queues) carry no handler code: no workers, no sharp, domain types only',
    from: under('src/queues/'),
    forbids: (i) =>
      i.target.startsWith('src/workers/') ||
      ['sharp', 'cloudinary'].includes(i.target) ||
      (i.target.startsWith('src/domain/') && !i.typeOnly),
  },
  {
    name: 'the event log knows no webhooks or workers (webhooks build on events, not the reverse)',
    from: under('src/events/'),
    forbids: (i) => i.target.startsWith('src/webhooks/') || i.target.startsWith('src/workers/'),
  },
  {
    name: 'src/outbound is shared below webhooks and images, so it imports neither (nor the domain)',
    from: under('src/outbound/'),
    forbids: (i) => ['src/webhooks/', 'src/images/', 'src/domain/'].some((p) => i.target.startsWith(p)),
  },
];

/**
 * What the API may call that writes, each with the reason docs/architecture.md gives. Every
 * other import by src/api from a module that writes tables must be a reader (get…, list…, find…).
 */
const apiWrites: Record<string, { names: string[]; why: string }> = {
  'src/webhooks/endpoints.ts': {
    names: ['createEndpoint', 'updateEndpoint', 'deleteEndpoint', 'rotateSecret', 'enableEndpoint'],
    why: 'endpoint settings are configuration, written synchronously (the secret is shown once)',
  },
  'src/webhooks/delivery-jobs.ts': {
    names: ['requeueDeliveries', 'queueDeliveryJobs'],
    why: 'a manual retry names its job on the row and resets it in the transaction that enqueues',
  },
  'src/domain/suppliers.ts': {
    names: ['createSupplier', 'updateSupplier'],
    why: 'a supplier carries its api key: as a job payload it would sit unsealed in Redis',
  },
  'src/webhooks/signing.ts': {
    names: ['verifySignature'],
    why: 'inbound webhooks are verified before anything is queued; pure, no write',
  },
  'src/domain/orders-status.ts': { names: ['orderStatuses'], why: 'a constant list, no write' },
  'src/domain/purchase-orders.ts': { names: ['purchaseOrderStatuses'], why: 'a constant list, no write' },
  'src/events/outbox.ts': { names: ['setTransactionActor'], why: 'the endpoint writes record their actor' },
  'src/events/consumers.ts': {
    names: ['ackConsumer', 'consumerStatuses'],
    why: "a consumer's acked position is the client's own (consumerStatuses only reads)",
  },
  'src/db/image-uploads.ts': {
    names: ['stageUploadChunk', 'finishStagedUpload', 'discardUploadChunks', 'deleteStagedUpload'],
    why: 'uploaded bytes stream into Postgres and are staged before the job is queued (too big for Redis)',
  },
  'src/db/api-keys.ts': { names: ['touchApiKey'], why: 'last use of a key, for operators' },
  'src/domain/ledger.ts': { names: ['movementKinds'], why: 'a constant list, no write' },
};
const writingModules = (target: string) =>
  target.startsWith('src/domain/') ||
  target.startsWith('src/webhooks/') ||
  target.startsWith('src/db/') ||
  ['src/events/outbox.ts', 'src/events/consumers.ts'].includes(target);
const reader = /^(get|list|find|has|count|read|is|to)[A-Z]/;

/**
 * src/workers is runtime only (processor, executor, queue workers, schedulers, metrics server) and
 * one thin handler map per queue: the SQL and the rules live in the rooms the maps call.
 */
const workerFiles = sourceFiles('src/workers');
const sqlIn = (text: string): string[] =>
  [
    // a query builder over a table: db('events'), trx<Row>('webhook_deliveries')
    /\b(?:db|trx|knex)\s*(?:<[^>]*>)?\s*\(\s*['"`]/,
    /\.raw\s*\(/,
    /['"`]\s*(?:select|insert\s+into|update\s+\w+\s+set|delete\s+from|with\s+\w+\s+as)\b/i,
  ].flatMap((pattern) => pattern.exec(text)?.[0] ?? []);
/** Still to move out with the inventory write path (issue 17, its own part). */
const pendingWorkerFiles = ['src/workers/group-commit.ts', 'src/workers/inventory.ts'];
/** A handler map file declares its map and nothing else (no helper, no rule, no SQL). */
const declarations = (text: string) =>
  [
    ...text.matchAll(
      /^(?:export\s+)?(?:async\s+)?(?:function|const|let|class|interface|type|enum)\s+(\w+)/gm,
    ),
  ].map((m) => m[1]!);

describe('layers (docs/architecture.md)', () => {
  it('reads the imports of every source file', () => {
    expect(imports.length).toBeGreaterThan(200);
    expect(imports.some((i) => i.file === 'src/api/app.ts' && i.target === 'fastify')).toBe(true);
  });

  for (const rule of rules) {
    it(rule.name, () => {
      const broken = imports
        .filter((i) => rule.from(i.file) && rule.forbids(i))
        .map((i) => `${i.file} imports ${i.target}`);
      expect(broken).toEqual([]);
    });
  }

  it('the API writes no table except where docs/architecture.md says why', () => {
    const unexplained = imports
      .filter((i) => i.file.startsWith('src/api/') && writingModules(i.target) && !i.typeOnly)
      .flatMap((i) =>
        i.names
          .filter((name) => !reader.test(name) && !apiWrites[i.target]?.names.includes(name))
          .map((name) => `${i.file} imports ${name} from ${i.target}`),
      );
    expect(unexplained).toEqual([]);
    const architecture = readFileSync(path.join(repoRoot, 'docs/architecture.md'), 'utf8');
    for (const module of Object.keys(apiWrites)) expect(architecture).toContain(module);
  });

  it('src/workers holds no SQL and imports no query builder', () => {
    const found = workerFiles
      .filter((file) => !pendingWorkerFiles.includes(file))
      .flatMap((file) => {
        const text = readFileSync(path.join(repoRoot, file), 'utf8');
        const knex = importsOf(file).filter((i) => i.target === 'knex' && !i.typeOnly);
        return [...sqlIn(text), ...knex.map(() => "import from 'knex'")].map((what) => `${file}: ${what}`);
      });
    expect(found).toEqual([]);
    // The check finds what it looks for.
    expect(sqlIn("await trx('events').where({ seq }); db.raw('select 1')")).toEqual([
      "trx('",
      '.raw(',
      "'select",
    ]);
  });

  it('the handler maps of src/workers are thin: one map per file, nothing else declared', () => {
    const maps = workerFiles.filter((file) =>
      /satisfies QueueHandlers</.test(readFileSync(path.join(repoRoot, file), 'utf8')),
    );
    expect(maps.length).toBeGreaterThanOrEqual(8);
    const thick = maps
      .filter((file) => !pendingWorkerFiles.includes(file))
      .flatMap((file) => {
        const names = declarations(readFileSync(path.join(repoRoot, file), 'utf8'));
        return names.length === 1 && names[0]!.endsWith('Handlers') ? [] : [`${file}: ${names.join(', ')}`];
      });
    expect(thick).toEqual([]);
  });
});
