import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { opsAssets } from '../../reports/ops-assets.js';
import { opsPage } from '../../reports/ops-page.js';
import type { ApiDeps } from '../deps.js';
import { problem, sendProblem } from '../problems.js';
import { readMayLag } from '../replica-reads.js';

/**
 * Nothing but this origin's own files, no inline script or style (the chart data travels as a
 * JSON block, which is not executed), no framing, no forms.
 */
const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The operator page (admin key, the sign-in of Bull Board: Basic with the key as password). */
export function registerOpsPage(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const assets = opsAssets();
  const secured = { 'Content-Security-Policy': contentSecurityPolicy, 'X-Content-Type-Options': 'nosniff' };

  const summary =
    'The operators’ page (HTML): stock value, movements, top sellers, low stock, queues, webhooks';
  app.get(
    '/ops',
    { config: { scope: 'admin' }, schema: { tags: ['operations'], summary } },
    async (request, reply) => {
      const html = await readMayLag(deps, request, reply, (db) => opsPage(db));
      return reply
        .headers(secured)
        .header('Cache-Control', 'no-store')
        .type('text/html; charset=utf-8')
        .send(html);
    },
  );

  app.get(
    '/ops/assets/:file',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['operations'],
        summary: 'What the operators’ page loads: uPlot, its chart script and styles',
        params: z.object({ file: z.string().max(100) }),
      },
    },
    async (request, reply) => {
      const asset = assets.get(request.params.file);
      if (!asset) return sendProblem(reply, request, problem(404, 'not_found', 'No such asset'));
      return reply
        .headers(secured)
        .type(asset.type)
        .header('Cache-Control', 'private, max-age=3600')
        .send(asset.body);
    },
  );
}
