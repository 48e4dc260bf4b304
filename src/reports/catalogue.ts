import { jobs, orders, reservations, webhooks } from './activity-reports.js';
import { ageing } from './ageing-report.js';
import { abc, movements, sellThrough } from './flow-reports.js';
import type { ReportDefinition } from './report.js';
import { lowStock, stockValuation } from './stock-reports.js';

/** Every report, in the order GET /api/pms/reports lists them. */
export const reports: ReportDefinition[] = [
  stockValuation,
  lowStock,
  movements,
  sellThrough,
  abc,
  ageing,
  reservations,
  orders,
  jobs,
  webhooks,
];
