import { DomainError } from '../../errors/domain-error.js';
import type { AdjustReason, MovementKind, NewMovement } from '../../schemas/inventory.js';
import type { ReserveInput } from '../../schemas/reservations.js';
import { type Allocation, allocate, type Candidate, type RequestLine } from '../allocation.js';
import { availableOf, type LevelKey, type LevelRow, levelKey } from '../levels.js';
import type { PlannedReservation } from '../reservations.js';
import type { LockedLevel } from './lock.js';

/**
 * The inventory write rules, without I/O: what an adjust or a reservation writes, decided over the
 * figures of locked levels. The lone domain functions (`adjustStock`, `createReservation`) and the
 * group-commit batch (`./batch.ts`) both decide through here, so they cannot disagree.
 */

export interface AdjustLine {
  sku: string;
  location: string;
  delta: number;
  reason: AdjustReason;
  reference?: string;
  note?: string;
  expectedOnHand?: number;
  /** What one unit received cost (minor units; reports value stock by moving average). */
  unitCost?: number;
}

/** The figures of a level the rules read and change (a locked row, or a running copy of it). */
export type LevelFigures = Pick<LevelRow, 'on_hand' | 'reserved' | 'safety_stock'>;

const kindOfReason: Record<AdjustReason, MovementKind> = {
  received: 'receipt',
  returned: 'return',
  damaged: 'adjustment',
  lost: 'adjustment',
  found: 'adjustment',
  correction: 'adjustment',
  other: 'adjustment',
};

/** A level's figures as error details show them. */
export const levelFigures = (row: LevelFigures) => ({
  onHand: row.on_hand,
  reserved: row.reserved,
  available: availableOf(row),
});

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

/**
 * The adjust rules over locked level figures: lines apply in order (two lines on one level see
 * each other), as the ledger trigger will apply them; every line that would break a constraint
 * (on_hand below reserved or below 0) or whose expectedOnHand differs is reported, not just the
 * first. Returns the movements to write and the figures after them; `levels` itself is not changed.
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

/** The reservation rule over locked candidate figures: where each line is served from, or insufficient_stock with every short line. */
export function planReservation(lines: RequestLine[], candidates: Candidate[]): Allocation[] {
  const outcome = allocate(lines, candidates);
  if (!outcome.ok) {
    throw new DomainError(
      'insufficient_stock',
      `${outcome.shortages.length} line(s) cannot be reserved: not enough available stock`,
      { lines: outcome.shortages },
    );
  }
  return outcome.allocations;
}

/** The ledger rows that reserve a new reservation's allocations (one per allocated level). */
export function reserveMovements(
  reservationId: string,
  reference: string,
  allocations: { sku: string; location: string; quantity: number }[],
): NewMovement[] {
  return allocations.map((a) => ({
    kind: 'reserve',
    sku: a.sku,
    location: a.location,
    delta: a.quantity,
    reason: 'reservation',
    reference,
    reservationId,
  }));
}

export const candidateOf = (level: LockedLevel): Candidate => ({
  sku: level.sku,
  location: level.location,
  available: availableOf(level),
  priority: level.priority ?? 0,
  active: level.active ?? false,
});

/** What a job asks of the stock that can be decided in memory. */
export type Request = { kind: 'adjust'; lines: AdjustLine[] } | { kind: 'reserve'; reserve: ReserveInput };

export type Decision =
  | { kind: 'adjust'; movements: NewMovement[] }
  | { kind: 'reserve'; reservation: PlannedReservation; movements: NewMovement[] };

/**
 * Decides one request over the running figures of the locked levels and applies it to them (as
 * the ledger trigger will apply its movements), so the next request sees it. Throws the
 * request's DomainError, leaving the figures as they were. Answers undefined when the figures
 * cannot decide it (a level it names is not among them: not created yet, or an unknown sku or
 * location); its domain function decides it then.
 */
export function decide(
  levels: Map<string, LockedLevel>,
  request: Request,
  newId: () => string,
): Decision | undefined {
  if (request.kind === 'adjust') {
    if (!request.lines.every((l) => levels.has(levelKey(l)))) return undefined;
    const { movements, after } = planAdjust(levels, request.lines);
    for (const [key, figures] of after) Object.assign(levels.get(key)!, figures);
    return { kind: 'adjust', movements };
  }
  const input = request.reserve;
  const lines = input.lines.map((l, index) => ({ ...l, index }));
  const explicit = new Set(
    lines.flatMap((l) => (l.location ? [levelKey({ sku: l.sku, location: l.location })] : [])),
  );
  const open = new Set(lines.filter((l) => !l.location).map((l) => l.sku));
  if ([...explicit].some((k) => !levels.has(k))) return undefined;
  const rows = [...levels.values()].filter((r) => explicit.has(levelKey(r)) || (open.has(r.sku) && r.active));
  // A sku without an active level: createReservation tells an unknown sku from a shortage.
  if ([...open].some((sku) => !rows.some((r) => r.sku === sku && r.active))) return undefined;
  const allocations = planReservation(lines, rows.map(candidateOf));
  for (const a of allocations) levels.get(levelKey(a))!.reserved += a.quantity;
  const id = newId();
  return {
    kind: 'reserve',
    reservation: { id, input, allocations },
    movements: reserveMovements(id, input.reference, allocations),
  };
}
