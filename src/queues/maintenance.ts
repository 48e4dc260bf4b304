import { z } from 'zod';
import { defineJob } from './job.js';

export const maintenanceJobs = {
  pruneAppliedJobs: defineJob<{ deleted: number }>()({
    name: 'maintenance.prune-applied-jobs',
    queue: 'maintenance',
    payload: z.object({
      /** Older records are deleted: no retry of a job can arrive after its job is gone from Redis. */
      olderThanSeconds: z.number().int().min(60),
    }),
    options: { attempts: 3 },
  }),
};
