import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';
import type { Queues } from '../queues/queues.js';
import { assignScope } from './auth.js';

export const bullBoardPath = '/admin/queues';

/** Bull Board for operators: every route it registers needs an `admin` key. */
export async function registerBullBoard(app: FastifyInstance, queues: Queues): Promise<void> {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(bullBoardPath);
  createBullBoard({
    queues: Object.values(queues).map((queue) => new BullMQAdapter(queue)),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Stockflow queues' } },
  });
  await app.register(async (board) => {
    assignScope(board, 'admin');
    // Its page links web fonts from a CDN: the deployment serves everything the board loads.
    board.addHook('onSend', async (_request, reply, payload) =>
      typeof payload === 'string' && String(reply.getHeader('content-type')).startsWith('text/html')
        ? withoutExternalLinks(payload)
        : payload,
    );
    await board.register(serverAdapter.registerPlugin(), { prefix: bullBoardPath });
  });
}

/** Drops `<link>`s to other origins (web fonts, preconnects); the CSS falls back to system fonts. */
export function withoutExternalLinks(html: string): string {
  return html.replace(/<link\b[^>]*\bhref="(?:https?:)?\/\/[^"]*"[^>]*>\s*/gi, '');
}
