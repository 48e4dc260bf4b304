import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { DomainError } from '../errors/domain-error.js';
import { appendEvent } from '../events/outbox.js';
import type { Level, Movement } from '../schemas/inventory.js';
import { lockLevels } from './inventory/lock.js';
import { type AdjustLine, assertKnown, decide, levelFigures } from './inventory/planner.js';
import { writeDecisions } from './inventory/writer.js';
import { insertMovements } from './ledger.js';
import { type LevelKey, type LevelRow, levelKey, toLevel } from './levels.js';

/**
 * Applies every line or none (the rules: `planAdjust`, through `decide`). The group-commit batch decides an adjust
 * whose levels exist in memory; this is the path that creates a missing level or reports an
 * unknown sku or location.
 */
export async function adjustStock(
  db: Knex,
  input: { movements: AdjustLine[] },
): Promise<{ movements: Movement[] }> {
  const { levels, unknownSkus, unknownLocations } = await lockLevels(db, input.movements);
  assertKnown(input.movements, unknownSkus, unknownLocations);
  // Every level is locked now (created if it was missing): the batch's rule decides.
  const decision = decide(levels, { kind: 'adjust', lines: input.movements }, randomUUID)!;
  const [result] = await writeDecisions(db, [decision]);
  return result as { movements: Movement[] };
}

/** A stock count: sets on_hand by writing a `count` movement with the difference (zero included). */
export async function countStock(
  db: Knex,
  input: LevelKey & { onHand: number; expectedOnHand?: number; reference?: string; note?: string },
): Promise<{ movement: Movement }> {
  const { levels, unknownSkus, unknownLocations } = await lockLevels(db, [input]);
  assertKnown([input], unknownSkus, unknownLocations);
  const level = levels.get(levelKey(input))!;
  const line = { index: 0, sku: input.sku, location: input.location };
  if (input.expectedOnHand !== undefined && input.expectedOnHand !== level.on_hand) {
    throw new DomainError('stale_quantity', `on_hand is ${level.on_hand}, not ${input.expectedOnHand}`, {
      lines: [{ ...line, expectedOnHand: input.expectedOnHand, onHand: level.on_hand }],
    });
  }
  if (input.onHand < level.reserved) {
    throw new DomainError(
      'insufficient_stock',
      `${level.reserved} unit(s) are reserved; release reservations before counting ${input.onHand}`,
      { lines: [{ ...line, requestedOnHand: input.onHand, ...levelFigures(level) }] },
    );
  }
  const [movement] = await insertMovements(db, [
    {
      kind: 'count',
      sku: input.sku,
      location: input.location,
      delta: input.onHand - level.on_hand,
      reason: 'count',
      reference: input.reference,
      note: input.note,
    },
  ]);
  return { movement: movement! };
}

/** Moves unreserved stock between two locations: both legs in the caller's transaction. */
export async function transferStock(
  db: Knex,
  input: { sku: string; from: string; to: string; quantity: number; reference?: string; note?: string },
): Promise<{ movements: Movement[] }> {
  const legs = [
    { sku: input.sku, location: input.from },
    { sku: input.sku, location: input.to },
  ];
  const { levels, unknownSkus, unknownLocations } = await lockLevels(db, legs);
  assertKnown(legs, unknownSkus, unknownLocations);
  const from = levels.get(levelKey(legs[0]!))!;
  if (from.on_hand - input.quantity < from.reserved) {
    throw new DomainError(
      'insufficient_stock',
      `${input.from} has ${from.on_hand - from.reserved} unreserved unit(s) of ${input.sku}, not ${input.quantity}`,
      {
        lines: [
          { index: 0, sku: input.sku, location: input.from, quantity: input.quantity, ...levelFigures(from) },
        ],
      },
    );
  }
  const common = { sku: input.sku, reason: 'transfer', reference: input.reference, note: input.note };
  const movements = await insertMovements(db, [
    { ...common, kind: 'transfer_out', location: input.from, delta: -input.quantity },
    { ...common, kind: 'transfer_in', location: input.to, delta: input.quantity },
  ]);
  return { movements };
}

/** Safety stock is held back from `available` (and so from reservations), not from on_hand. */
export async function setSafetyStock(db: Knex, input: LevelKey & { safetyStock: number }): Promise<Level> {
  const { unknownSkus, unknownLocations } = await lockLevels(db, [input]);
  assertKnown([input], unknownSkus, unknownLocations);
  const [row] = await db<LevelRow>('inventory_levels')
    .where({ sku: input.sku, location: input.location })
    .update({
      safety_stock: input.safetyStock,
      version: db.raw('version + 1'),
      updated_at: db.fn.now(),
    } as never)
    .returning('*');
  const level = toLevel(row as LevelRow);
  await appendEvent(db, {
    type: 'stock.safety_stock_set',
    aggregate: { type: 'inventory', id: input.sku },
    data: { level },
  });
  return level;
}
