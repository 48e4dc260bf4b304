import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance, RouteOptions } from 'fastify';
import type { Queues } from '../queues/queues.js';
import { assignScope, type RouteScope } from './auth.js';
import { problem, sendProblem } from './problems.js';

/** The operators' board: read-only for admin keys (writable for them only with BULL_BOARD_WRITE). */
export const bullBoardPath = '/admin/queues';
/** The same board with its write actions (retry, clean, pause, promote, obliterate…), for `ops` keys. */
export const opsBoardPath = '/admin/ops/queues';

/**
 * Bull Board routes that write arbitrary job data: refused on every board, whatever the key. A
 * job added or edited here would skip our intake validation and idempotency altogether.
 */
const refusedRoutes: { method: string; suffix: RegExp }[] = [
  { method: 'POST', suffix: /\/api\/queues\/:queueName\/add$/ },
  { method: 'PATCH', suffix: /\/api\/queues\/:queueName\/:jobId\/update-data$/ },
  // A scheduler's update replaces the data of every job it will create.
  { method: 'PATCH', suffix: /\/api\/queues\/:queueName\/job-schedulers\/:schedulerId$/ },
];

const isRefused = (route: RouteOptions) =>
  refusedRoutes.some((r) => methodsOf(route).includes(r.method) && r.suffix.test(route.url));

const methodsOf = (route: RouteOptions) => (Array.isArray(route.method) ? route.method : [route.method]);

/** Frames nothing of ours: Bull Board's buttons must not be clickjacked from another site. */
function denyFraming(app: FastifyInstance): void {
  app.addHook('onSend', async (request, reply) => {
    const url = request.routeOptions.url ?? request.url;
    if (url.startsWith('/admin')) {
      reply.header('Content-Security-Policy', "frame-ancestors 'none'");
      reply.header('X-Frame-Options', 'DENY');
    }
  });
}

async function registerBoard(
  app: FastifyInstance,
  queues: Queues,
  options: { path: string; readOnly: boolean; readScope: RouteScope; writeScope: RouteScope; title: string },
): Promise<void> {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(options.path);
  createBullBoard({
    queues: Object.values(queues).map(
      (queue) => new BullMQAdapter(queue, { readOnlyMode: options.readOnly }),
    ),
    serverAdapter,
    options: { uiConfig: { boardTitle: options.title } },
  });
  await app.register(async (board) => {
    board.addHook('onRoute', (route) => {
      const write = methodsOf(route).some((m) => m !== 'GET' && m !== 'HEAD');
      route.config = { ...route.config, scope: write ? options.writeScope : options.readScope };
      if (isRefused(route)) {
        // After authorisation (app-level hooks run first): a valid key learns the route is refused.
        route.onRequest = async (request, reply) =>
          sendProblem(
            reply,
            request,
            problem(403, 'forbidden', 'Bull Board cannot add jobs or edit job data: use the API'),
          );
      }
    });
    assignScope(board, options.readScope);
    // Its page links web fonts from a CDN: the deployment serves everything the board loads.
    board.addHook('onSend', async (_request, reply, payload) =>
      typeof payload === 'string' && String(reply.getHeader('content-type')).startsWith('text/html')
        ? withoutExternalLinks(payload)
        : payload,
    );
    await board.register(serverAdapter.registerPlugin(), { prefix: options.path });
  });
}

/**
 * Bull Board, twice: at /admin/queues read-only for admin keys (Bull Board's `readOnlyMode`; with
 * BULL_BOARD_WRITE=true admin keys may also write there), and at /admin/ops/queues with its write
 * actions for keys holding the `ops` scope. Adding jobs and editing job data are refused on both.
 */
export async function registerBullBoard(
  app: FastifyInstance,
  queues: Queues,
  config: { BULL_BOARD_WRITE: boolean },
): Promise<void> {
  denyFraming(app);
  await registerBoard(app, queues, {
    path: bullBoardPath,
    readOnly: !config.BULL_BOARD_WRITE,
    readScope: 'admin',
    writeScope: config.BULL_BOARD_WRITE ? 'admin' : 'ops',
    title: 'Stockflow queues',
  });
  await registerBoard(app, queues, {
    path: opsBoardPath,
    readOnly: false,
    readScope: 'ops',
    writeScope: 'ops',
    title: 'Stockflow queues (ops)',
  });
}

/** Drops `<link>`s to other origins (web fonts, preconnects); the CSS falls back to system fonts. */
export function withoutExternalLinks(html: string): string {
  return html.replace(/<link\b[^>]*\bhref="(?:https?:)?\/\/[^"]*"[^>]*>\s*/gi, '');
}
