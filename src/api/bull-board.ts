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
    await board.register(serverAdapter.registerPlugin(), { prefix: bullBoardPath });
  });
}
