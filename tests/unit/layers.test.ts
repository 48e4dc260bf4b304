import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/context.js';
import { importCycles, importGraph } from '../helpers/import-cycles.js';

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
/** The job declarations: one file per queue, named for it. */
const queueDeclarations = sourceFiles('src/queues').filter((file) =>
  /\bexport const \w+Jobs = \{/.test(readFileSync(path.join(repoRoot, file), 'utf8')),
);
/** Whether a file exports a reader function (`get…`, `list…`, `find…`). */
const exportsReader = (file: string) =>
  /^export (?:async )?function (?:get|list|find)[A-Z]/m.test(readFileSync(path.join(repoRoot, file), 'utf8'));
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
      [
        'src/images/pipeline.ts',
        'src/images/storage.ts',
        'src/images/open-storage.ts',
        'src/images/cloudinary-storage.ts',
      ].includes(i.target),
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
  {
    name: 'src/schemas is the bottom layer: it imports zod, iso-3166, fastest-levenshtein and itself, nothing else of src/',
    from: under('src/schemas/'),
    forbids: (i) =>
      i.target.startsWith('src/')
        ? !i.target.startsWith('src/schemas/')
        : !['zod', 'iso-3166', 'fastest-levenshtein'].includes(i.target),
  },
  {
    name: 'reports are reads: src/reports imports no file of src/queues (its shapes come from src/schemas)',
    from: under('src/reports/'),
    forbids: (i) => i.target.startsWith('src/queues/'),
  },
  {
    name: 'a domain file with readers (get…, list…, find…) imports no file of src/queues, not even a type',
    from: (f) => f.startsWith('src/domain/') && exportsReader(f),
    forbids: (i) => i.target.startsWith('src/queues/'),
  },
  {
    name: 'routes take from a queue file only what they queue (…Jobs and a write’s …Body or …Payload); read shapes come from src/schemas',
    from: under('src/api/'),
    forbids: (i) =>
      queueDeclarations.includes(i.target) &&
      i.names.some((name) => !/(?:Jobs|Body|Payload|Range)$/.test(name)),
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
    why: 'a manual retry names its job on the row and resets it in the transaction that queues it (queueNamedJobs)',
  },
  'src/domain/suppliers.ts': {
    names: ['createSupplier', 'updateSupplier'],
    why: 'a supplier carries its api key: as a job payload it would sit unsealed in Redis; a change locks its rules and queues their checks before it commits',
  },
  'src/webhooks/signing.ts': {
    names: ['verifySignature'],
    why: 'inbound webhooks are verified before anything is queued; pure, no write',
  },
  'src/db/job-context.ts': { names: ['setJobContext'], why: 'the endpoint writes record their actor' },
  'src/events/consumers.ts': {
    names: ['ackConsumer', 'consumerStatuses'],
    why: "a consumer's acked position is the client's own (consumerStatuses only reads)",
  },
  'src/db/image-uploads.ts': {
    names: ['stageUploadChunk', 'finishStagedUpload', 'discardUploadChunks', 'deleteStagedUpload'],
    why: 'uploaded bytes stream into Postgres and are staged before the job is queued (too big for Redis)',
  },
  'src/db/api-keys.ts': { names: ['touchApiKey'], why: 'last use of a key, for operators' },
  'src/reports/answer.ts': {
    names: ['reportPage', 'reportExport'],
    why: 'a read-only repeatable-read transaction, so a report reads rollups and pending rows once; no write',
  },
  'src/reports/ops-page.ts': {
    names: ['opsPage'],
    why: 'the same read-only snapshot, for the operators’ page',
  },
};
/**
 * The SQL the API may run itself, beside the calls above: the one transaction those writes share
 * (`writeDirectly`, with its actor and event). Every other table access of src/api goes through a
 * function of the room that owns the table.
 */
const apiOwnSql: Record<string, { found: string[]; why: string }> = {
  'src/api/direct-write.ts': {
    found: ['.transaction('],
    why: 'the listed writes run in one transaction with their event, recorded as the caller',
  },
};
const writingModules = (target: string) =>
  target.startsWith('src/domain/') ||
  target.startsWith('src/webhooks/') ||
  target.startsWith('src/db/') ||
  ['src/events/outbox.ts', 'src/events/consumers.ts'].includes(target);
const reader = /^(get|list|find|has|count|read|is|to)[A-Z]/;

/** Source without its comments (a comment may name SQL it does not run). */
const withoutComments = (text: string) =>
  text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\w])\/\/.*$/gm, '$1');

/** Hash and cipher updates (`createHash(…).update(…)`, `hash.update(…)`): not knex's update. */
const withoutDigests = (text: string) =>
  text
    .replace(
      /\bcreate(?:Hash|Hmac|Cipheriv|Decipheriv)\s*\((?:[^()]|\([^()]*\))*\)(?:\s*\.update\s*\((?:[^()]|\([^()]*\))*\))+/g,
      '',
    )
    .replace(/\b(?:hash|hmac|cipher|decipher)\.update\s*\(/gi, '');

/** The knex and SQL writes of `text` (opening a transaction counts as one; a lock does not). */
const sqlWritesIn = (text: string): string[] => {
  const code = withoutDigests(withoutComments(text));
  return [
    /\.(?:insert|update|del|onConflict|merge|increment|decrement|truncate|upsert|transaction)\s*\(/g,
    /\.delete\s*\(\s*\)/g,
    /\b(?:insert\s+into|update\s+\w+(?:\s+\w+)?\s+set|delete\s+from|truncate\s+\w+)\b/gi,
  ].flatMap((pattern) => [...code.matchAll(pattern)].map((m) => m[0].replace(/\s+/g, ' ')));
};

/**
 * What in `text` runs SQL of its own: a query builder over a table (`deps.db('products')`,
 * `trx<Row>(…)`), and every write `sqlWritesIn` finds.
 */
const ownSqlIn = (text: string): string[] => [
  ...[...withoutComments(text).matchAll(/\b(?:db|trx|knex)\s*(?:<[^>]*>)?\s*\(/g)].map((m) => m[0]),
  ...sqlWritesIn(text),
];

/** Top-level declarations of a file and their text (up to the next one). */
function declarationsOf(text: string): Map<string, string> {
  const starts = [...text.matchAll(/^(?:export\s+)?(?:async\s+)?(?:function\*?|const|let|class)\s+(\w+)/gm)];
  return new Map(starts.map((m, i) => [m[1]!, text.slice(m.index, starts[i + 1]?.index ?? text.length)]));
}

const writersMemo = new Map<string, Set<string>>();
/**
 * The top-level functions and constants of a source file that write: their own text writes
 * (`sqlWritesIn`), or they use a writer of the same file or one they import (`appendEvent`).
 */
function writersOf(file: string): Set<string> {
  const known = writersMemo.get(file);
  if (known) return known;
  const writers = new Set<string>();
  writersMemo.set(file, writers); // an import cycle sees what is found so far
  const declarations = declarationsOf(withoutComments(readFileSync(path.join(repoRoot, file), 'utf8')));
  const imported = importsOf(file)
    .filter((i) => i.target.startsWith('src/') && !i.typeOnly)
    .flatMap((i) => i.names.filter((name) => writersOf(i.target).has(name)));
  const uses = (text: string, names: Iterable<string>) =>
    [...names].some((name) => new RegExp(`\\b${name}\\b`).test(text));
  for (let grew = true; grew; ) {
    grew = false;
    for (const [name, text] of declarations) {
      if (writers.has(name) || !(sqlWritesIn(text).length > 0 || uses(text, [...imported, ...writers])))
        continue;
      writers.add(name);
      grew = true;
    }
  }
  return writers;
}

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

  it('finds the job declarations and the domain files with readers it checks', () => {
    expect(queueDeclarations).toContain('src/queues/inventory.ts');
    expect(queueDeclarations).not.toContain('src/queues/job.ts');
    expect(exportsReader('src/domain/reorder-rules.ts')).toBe(true);
  });

  it('src/ has no import cycle (type imports included)', () => {
    expect(importCycles(importGraph(repoRoot, 'src'))).toEqual([]);
    // The check finds what it looks for: a cycle through a type import, and one through import().
    const graph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts', 'd.ts']],
      ['d.ts', []],
      ['e.ts', ['f.ts']],
      ['f.ts', ['e.ts']],
    ]);
    expect(importCycles(graph)).toEqual([
      ['a.ts', 'b.ts', 'c.ts'],
      ['e.ts', 'f.ts'],
    ]);
    const src = importGraph(repoRoot, 'src');
    expect(src.get('src/domain/products.ts')).toContain('src/schemas/products.ts'); // `import type`
    expect(src.get('src/images/open-storage.ts')).toContain('src/images/cloudinary-storage.ts'); // import()
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
    for (const module of [...Object.keys(apiWrites), ...Object.keys(apiOwnSql)])
      expect(architecture).toContain(module);
  });

  it('the API calls no function that writes but those docs/architecture.md lists', () => {
    const unlisted = imports
      .filter(
        (i) =>
          i.file.startsWith('src/api/') &&
          i.target.startsWith('src/') &&
          !i.target.startsWith('src/api/') &&
          !i.typeOnly,
      )
      .flatMap((i) =>
        i.names
          .filter((name) => writersOf(i.target).has(name) && !apiWrites[i.target]?.names.includes(name))
          .map((name) => `${i.file} imports ${name} from ${i.target}, which writes`),
      );
    expect(unlisted).toEqual([]);
    // The check finds what it looks for: direct writes, and writes through another function.
    expect(writersOf('src/events/outbox.ts').has('appendEvent')).toBe(true);
    expect(writersOf('src/domain/suppliers.ts')).toEqual(new Set(['createSupplier', 'updateSupplier']));
    expect(writersOf('src/domain/purchase-orders.ts').has('openStatuses')).toBe(false);
  });

  it('src/api queues jobs only through submitJob and queueNamedJobs (src/api/submit-job.ts)', () => {
    const adders = ['enqueue', 'addFollowUps', 'queueDeliveryJobs'];
    const bypassing = sourceFiles('src/api')
      .filter((file) => file !== 'src/api/submit-job.ts')
      .flatMap((file) => {
        const names = importsOf(file).flatMap((i) => (i.typeOnly ? [] : i.names));
        const adds = names.filter((name) => adders.includes(name));
        return adds.length > 0 && !names.includes('queueNamedJobs') ? [`${file}: ${adds.join(', ')}`] : [];
      });
    expect(bypassing).toEqual([]);
  });

  it('src/api runs no SQL of its own: no query builder over a table, no write, no transaction', () => {
    const found = sourceFiles('src/api').flatMap((file) => {
      const allowed = [...(apiOwnSql[file]?.found ?? [])];
      return ownSqlIn(readFileSync(path.join(repoRoot, file), 'utf8'))
        .filter((what) => {
          const at = allowed.indexOf(what);
          if (at >= 0) allowed.splice(at, 1);
          return at < 0;
        })
        .map((what) => `${file}: ${what}`);
    });
    expect(found).toEqual([]);
    for (const [file, { found: allowed }] of Object.entries(apiOwnSql))
      expect(ownSqlIn(readFileSync(path.join(repoRoot, file), 'utf8')), file).toEqual(allowed);
    // The check finds what it looks for, and not a digest or a Map.
    expect(
      ownSqlIn(`
        await deps.db('products').where({ sku }).update({ name }); // deps.db('comment')
        await deps.db.transaction(async (trx) => trx.raw('delete from images where id = ?', [id]));
        await db.raw(\`insert into levels (sku) values (?)\`, [sku]);
        const digest = createHash('sha256').update(\`\${a(b)}\`).update(c).digest('hex');
        hash.update(chunk); cache.delete(key); await trx('x').where({ id }).delete();
      `),
    ).toEqual(['db(', 'trx(', '.update(', '.transaction(', '.delete()', 'delete from', 'insert into']);
  });

  it('src/workers holds no SQL and imports no query builder', () => {
    const found = workerFiles.flatMap((file) => {
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
    const thick = maps.flatMap((file) => {
      const names = declarations(readFileSync(path.join(repoRoot, file), 'utf8'));
      return names.length === 1 && names[0]!.endsWith('Handlers') ? [] : [`${file}: ${names.join(', ')}`];
    });
    expect(thick).toEqual([]);
  });
});
