import type { Config } from '../config.js';
import { imageJobs } from './images.js';
import { inboundJobs } from './inbound.js';
import { inventoryJobs, inventorySchedulers } from './inventory.js';
import type { AnyJob, QueueName, Scheduler } from './job.js';
import { maintenanceJobs, maintenanceSchedulers } from './maintenance.js';
import { orderJobs } from './orders.js';
import { productJobs } from './products.js';
import { reorderJobs, reorderSchedulers } from './reorder.js';
import { webhookJobs } from './webhooks.js';

/** Every job the platform knows, by name. Add a queue's jobs here once; the worker map must then cover them. */
export const jobCatalog = Object.fromEntries(
  [
    ...Object.values(productJobs),
    ...Object.values(maintenanceJobs),
    ...Object.values(imageJobs),
    ...Object.values(webhookJobs),
    ...Object.values(inventoryJobs),
    ...Object.values(reorderJobs),
    ...Object.values(orderJobs),
    ...Object.values(inboundJobs),
  ].map((job) => [job.name, job]),
) as { [J in CatalogJob as J['name']]: J };

type CatalogJob =
  | (typeof productJobs)[keyof typeof productJobs]
  | (typeof maintenanceJobs)[keyof typeof maintenanceJobs]
  | (typeof imageJobs)[keyof typeof imageJobs]
  | (typeof webhookJobs)[keyof typeof webhookJobs]
  | (typeof inventoryJobs)[keyof typeof inventoryJobs]
  | (typeof reorderJobs)[keyof typeof reorderJobs]
  | (typeof orderJobs)[keyof typeof orderJobs]
  | (typeof inboundJobs)[keyof typeof inboundJobs];

export type JobName = CatalogJob['name'];
export type JobNamed<N extends JobName> = Extract<CatalogJob, { name: N }>;
export type JobNamesOf<Q extends QueueName> = Extract<CatalogJob, { queue: Q }>['name'];

export function findJob(name: string): AnyJob | undefined {
  return (jobCatalog as Record<string, AnyJob>)[name];
}

/** Every job scheduler of the platform, each declared in its queue's file. */
export const schedulersOf = (config: Config): Scheduler[] => [
  ...inventorySchedulers(config),
  ...maintenanceSchedulers(config),
  ...reorderSchedulers(config),
];
