import { z } from 'zod';
import { httpUrlSchema } from './fields.js';
import { typePatternSchema } from './type-patterns.js';

/**
 * What a webhook endpoint's create and update take (the API writes endpoints directly, so no job
 * carries it). Not in `webhooks.ts`: the type patterns check against the event catalogue, which
 * declares the endpoint events with `webhookEndpointSchema` from there.
 */
export const endpointFieldsSchema = z
  .object({
    url: httpUrlSchema,
    eventTypes: z.array(typePatternSchema).min(1).max(100),
    description: z.string().max(1000).nullish(),
    rateLimitPerSecond: z.number().int().min(1).max(10_000).nullish(),
  })
  .meta({
    example: {
      url: 'https://pms.example.com/hooks',
      eventTypes: ['product.*', 'stock.moved'],
      description: 'PMS',
    },
  });
export type EndpointFields = z.output<typeof endpointFieldsSchema>;
