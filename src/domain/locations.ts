import type { Knex } from 'knex';
import { isPgError, pgErrorCodes } from '../db/knex.js';
import { DomainError } from '../errors/domain-error.js';
import { appendEvent } from '../events/outbox.js';
import type { EventType } from '../schemas/event-types.js';
import type { Location, LocationFields } from '../schemas/locations.js';

interface LocationRow {
  code: string;
  name: string;
  priority: number;
  active: boolean;
  version: number;
  created_at: Date;
  updated_at: Date;
}

const toLocation = (row: LocationRow): Location => ({
  code: row.code,
  name: row.name,
  priority: row.priority,
  active: row.active,
  version: row.version,
  createdAt: row.created_at.toISOString(),
  updatedAt: row.updated_at.toISOString(),
});

const locationEvent = (type: EventType, location: Location) => ({
  type,
  aggregate: { type: 'location', id: location.code },
  data: { location },
});

/** Creates a location; an active one gets a zero level for every non-archived product (trigger). */
export async function createLocation(db: Knex, input: LocationFields & { code: string }): Promise<Location> {
  let row: LocationRow | undefined;
  try {
    [row] = await db<LocationRow>('locations').insert(input).returning('*');
  } catch (error) {
    if (isPgError(error, pgErrorCodes.uniqueViolation, 'locations_pkey')) {
      throw new DomainError('location_taken', `A location with code ${input.code} already exists`, {
        code: input.code,
      });
    }
    throw error;
  }
  const location = toLocation(row!);
  await appendEvent(db, locationEvent('location.created', location));
  return location;
}

/** Replaces name, priority and active. Stock stays where it is when a location is deactivated. */
export async function updateLocation(
  db: Knex,
  input: LocationFields & { code: string; expectedVersion?: number },
): Promise<Location> {
  const current = await db<LocationRow>('locations').where({ code: input.code }).forUpdate().first();
  if (!current) {
    throw new DomainError('not_found', `Location ${input.code} does not exist`, { location: input.code });
  }
  if (input.expectedVersion !== undefined && current.version !== input.expectedVersion) {
    throw new DomainError(
      'version_conflict',
      `Location ${input.code} is at version ${current.version}, not ${input.expectedVersion}`,
      { location: input.code, expectedVersion: input.expectedVersion, currentVersion: current.version },
    );
  }
  const [row] = await db<LocationRow>('locations')
    .where({ code: input.code })
    .update({ name: input.name, priority: input.priority, active: input.active })
    .returning('*');
  const location = toLocation(row!);
  await appendEvent(db, locationEvent('location.updated', location));
  return location;
}

export async function listLocations(db: Knex): Promise<Location[]> {
  const rows = await db<LocationRow>('locations').orderBy([{ column: 'priority' }, { column: 'code' }]);
  return rows.map(toLocation);
}
