import { Queue } from 'bullmq';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config.js';
import { createProductPayload } from '../../src/schemas/products.js';

/**
 * The intake benchmark's baselines, as a separate process like the real web process:
 * `POST /bare` only answers 202; `POST /enqueue` validates the same zod schema and calls
 * `queue.add` (nothing else: no auth, no idempotency, no problem documents).
 */
const config = parseConfig();
const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: 1 });
const queue = new Queue('baseline', { connection: redis, prefix: config.QUEUE_PREFIX });
const app = Fastify({ logger: false });

app.post('/bare', async (_request, reply) => reply.code(202).send({ ok: true }));
app.post('/enqueue', async (request, reply) => {
  const parsed = createProductPayload.safeParse(request.body);
  if (!parsed.success) return reply.code(400).send({ errors: parsed.error.issues });
  const job = await queue.add('product.create', { payload: parsed.data }, { removeOnComplete: true });
  return reply.code(202).send({ id: job.id, state: 'waiting' });
});

await app.listen({ host: '127.0.0.1', port: config.PORT });
process.stdout.write('baseline listening\n');
process.on('SIGTERM', async () => {
  await app.close();
  await queue.close();
  redis.disconnect();
  process.exit(0);
});
