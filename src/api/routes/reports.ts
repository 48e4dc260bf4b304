import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Knex } from 'knex';
import { reportExport, reportPage } from '../../reports/answer.js';
import { reports } from '../../reports/catalogue.js';
import { csvStream } from '../../reports/csv.js';
import { limitParam } from '../../reports/params.js';
import type { KeyPart, ReportDefinition } from '../../reports/report.js';
import type { ApiDeps } from '../deps.js';
import { lsnHeaders, lsnQuery, readMayLag } from '../replica-reads.js';

const wantsCsv = (accept: string | undefined) => /\btext\/csv\b/i.test(accept ?? '');

/** JSON by default; CSV streamed from the report's rows with `Accept: text/csv`. */
async function answer(
  db: Knex,
  report: ReportDefinition,
  query: Record<string, unknown> & { cursor?: KeyPart[]; limit: number },
  reply: FastifyReply,
  csv: boolean,
) {
  const { cursor, limit, ...params } = query;
  if (!csv) return reportPage(db, report, params, { after: cursor, limit });
  const { asOf, rows, finish } = await reportExport(db, report, params, cursor);
  const stream = csvStream(report.columns, rows);
  stream.once('end', () => void finish());
  stream.once('error', (error) => void finish(error));
  // A client that goes away ends the read: the cursor's transaction must not stay open.
  reply.raw.once('close', () => {
    if (!stream.readableEnded) stream.destroy();
    void finish(new Error('closed'));
  });
  return reply
    .header('Content-Type', 'text/csv; charset=utf-8; header=present')
    .header('Content-Disposition', `attachment; filename="${report.name}-${asOf.at.slice(0, 10)}.csv"`)
    .header('X-Stockflow-As-Of', `${asOf.at}; movement=${asOf.movementId}`)
    .send(stream);
}

/**
 * Reports (docs/reports.md): one GET route per report of the catalogue, JSON by default and CSV
 * with `Accept: text/csv`, and the list of them with each one's formula and edge rules.
 */
export function registerReportRoutes(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const tags = ['reports'];

  app.get(
    '/api/pms/reports',
    {
      config: { scope: 'pms' },
      schema: { tags, summary: 'Every report, with its parameters, formula, edge rules and CSV columns' },
    },
    async () => ({
      items: reports.map((r) => ({
        name: r.name,
        href: `/api/pms/reports/${r.name}`,
        summary: r.summary,
        formula: r.formula,
        edgeRules: r.edgeRules,
        parameters: [...Object.keys(r.query.shape), 'cursor', 'limit'],
        formats: ['application/json', 'text/csv'],
        columns: r.columns.map((c) => c.name),
      })),
    }),
  );

  for (const report of reports) {
    const querystring = report.query
      .extend({ cursor: report.cursor.schema.optional(), limit: limitParam, ...lsnQuery })
      .superRefine((q, ctx) => report.check?.(q, ctx));
    app.get(
      `/api/pms/reports/${report.name}`,
      {
        config: { scope: 'pms' },
        schema: {
          tags,
          summary: `${report.summary} (JSON, or CSV with Accept: text/csv)`,
          description: `${report.formula}\n\n${report.edgeRules.map((r) => `- ${r}`).join('\n')}`,
          querystring,
          headers: lsnHeaders,
        },
      },
      (request, reply) => {
        const { lsn: _, ...query } = request.query as Record<string, unknown> & {
          cursor?: KeyPart[];
          limit: number;
        };
        return readMayLag(deps, request, reply, (db) =>
          answer(db, report, query, reply, wantsCsv(request.headers.accept)),
        );
      },
    );
  }
}
