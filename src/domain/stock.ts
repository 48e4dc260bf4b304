import type { Knex } from 'knex';
import { DomainError } from '../errors/domain-error.js';
import { appendEvent } from '../events/outbox.js';
import type { AdjustReason } from '../queues/inventory.js';
import { insertMovements, type Movement, type MovementKind, type NewMovement } from './ledger.js';
import {
  availableOf,
  type Level,
  type LevelKey,
  type LevelRow,
  levelKey,
  lockLevels,
  toLevel,
} from './levels.js';

export interface AdjustLine {
  sku: string;
  location: string;
  delta: number;
  reason: AdjustReason;
  reference?: string;
  note?: string;
  expectedOnHand?: number;
  unitCost?: number;
}

const kindOfReason: Record<AdjustReason, MovementKind> = {
  received: 'receipt',
  returned: 'return',
  damaged: 'adjustment',
  lost: 'adjustment',
  found: 'adjustment',
  correction: 'adjustment',
  other: 'adjustment',
};

/** Fails with not_found, listing every line whose sku or location does not exist. */
export function assertKnown(
  lines: (LevelKey & { index?: number })[],
  unknownSkus: Set<string>,
  unknownLocations: Set<string>,
): void {
  if (unknownSkus.size === 0 && unknownLocations.size === 0) return;
  const offending = lines.flatMap((line, i) => {
    const missing = [
      ...(unknownSkus.has(line.sku) ? ['sku'] : []),
      ...(unknownLocations.has(line.location) ? ['location'] : []),
    ];
    return missing.length
      ? [{ index: line.index ?? i, sku: line.sku, location: line.location, missing }]
      : [];
  });
  throw new DomainError(
    'not_found',
    `${offending.length} line(s) name an unknown sku or location: ${[...unknownSkus, ...unknownLocations].join(', ')}`,
    { lines: offending },
  );
}

const levelFigures = (row: LevelFigures) => ({
  onHand: row.on_hand,
  reserved: row.reserved,
  available: availableOf(row),
});

/** The figures of a level the adjust rules read and change (a locked row, or a running copy of it). */
export type LevelFigures = Pick<LevelRow, 'on_hand' | 'reserved' | 'safety_stock'>;

/**
 * The adjust rules over locked level figures, without I/O (shared by `adjustStock` and the
 * group-commit batch): lines apply in order (two lines on one level see each other), as the
 * ledger trigger will apply them; every line that would break a constraint (on_hand below
 * reserved or below 0) or whose expectedOnHand differs is reported, not just the first. Returns
 * the movements to write and the figures after them; `levels` itself is not changed.
 */
export function planAdjust(
  levels: Map<string, LevelFigures>,
  lines: AdjustLine[],
): { movements: NewMovement[]; after: Map<string, LevelFigures> } {
  const after = new Map<string, LevelFigures>();
  const stale: Record<string, unknown>[] = [];
  const insufficient: Record<string, unknown>[] = [];
  lines.forEach((line, index) => {
    const key = levelKey(line);
    let level = after.get(key);
    if (!level) {
      level = { ...levels.get(key)! };
      after.set(key, level);
    }
    if (line.expectedOnHand !== undefined && line.expectedOnHand !== level.on_hand) {
      stale.push({
        index,
        sku: line.sku,
        location: line.location,
        expectedOnHand: line.expectedOnHand,
        onHand: level.on_hand,
      });
    }
    if (level.on_hand + line.delta < level.reserved) {
      insufficient.push({
        index,
        sku: line.sku,
        location: line.location,
        delta: line.delta,
        ...levelFigures(level),
      });
    } else {
      level.on_hand += line.delta;
    }
  });
  if (stale.length > 0) {
    throw new DomainError('stale_quantity', `${stale.length} line(s) expected another on-hand quantity`, {
      lines: stale,
    });
  }
  if (insufficient.length > 0) {
    throw new DomainError(
      'insufficient_stock',
      `${insufficient.length} line(s) would take on_hand below 0 or below the reserved quantity`,
      { lines: insufficient },
    );
  }
  const movements = lines.map((line) => ({
    kind: kindOfReason[line.reason],
    sku: line.sku,
    location: line.location,
    delta: line.delta,
    reason: line.reason,
    reference: line.reference,
    note: line.note,
    unitCost: line.unitCost,
  }));
  return { movements, after };
}

/** Applies every line or none (the rules: `planAdjust`). */
export async function adjustStock(
  db: Knex,
  input: { movements: AdjustLine[] },
): Promise<{ movements: Movement[] }> {
  const { levels, unknownSkus, unknownLocations } = await lockLevels(db, input.movements);
  assertKnown(input.movements, unknownSkus, unknownLocations);
  const { movements } = planAdjust(levels, input.movements);
  return { movements: await insertMovements(db, movements) };
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
