import type { AllocationRule } from '../schemas/reservations.js';
/**
 * Where each reservation line is served from. Pure: the caller locks the candidate levels and
 * passes their availability in.
 *
 * Rules, in order:
 * - `explicit`: the line names its location;
 * - `single_location`: the first active location (by priority, then code) that can serve every
 *   line without a location serves them all;
 * - `fewest_locations`: otherwise the smallest set of locations such that each sku is served
 *   whole by one of them (ties go to the set with the better priorities);
 * - `split`: a sku no single location can serve is taken from several, best priority first.
 * Lines of the same sku are summed before anything is checked, so a bundle that names a sku
 * twice cannot pass on stock that covers only one of its lines.
 */

export interface RequestLine {
  index: number;
  sku: string;
  quantity: number;
  location?: string;
}

export interface Candidate {
  sku: string;
  location: string;
  /** on_hand − reserved − safety_stock, not below 0. */
  available: number;
  priority: number;
  active: boolean;
}

export interface Allocation {
  index: number;
  sku: string;
  location: string;
  quantity: number;
  rule: AllocationRule;
}

export interface Shortage {
  index: number;
  sku: string;
  location: string | null;
  requested: number;
  /** The sum over every line of this sku (at this location, for located lines). */
  requestedTotal: number;
  available: number;
}

export type AllocationOutcome =
  | { ok: true; allocations: Allocation[] }
  | { ok: false; shortages: Shortage[] };

/** Above this many combinations the minimal set is approximated greedily (most skus served first). */
const maxCombinations = 20_000;

const keyOf = (sku: string, location: string) => `${sku}\u0000${location}`;

export function allocate(lines: RequestLine[], candidates: Candidate[]): AllocationOutcome {
  const available = new Map(candidates.map((c) => [keyOf(c.sku, c.location), c.available]));
  const avail = (sku: string, location: string) => available.get(keyOf(sku, location)) ?? 0;
  const shortages: Shortage[] = [];
  const allocations: Allocation[] = [];

  // 1. Lines that name their location, summed per sku × location.
  const explicit = groupBy(
    lines.filter((l) => l.location !== undefined),
    (l) => keyOf(l.sku, l.location!),
  );
  for (const group of explicit.values()) {
    const { sku, location } = group[0]! as Required<RequestLine>;
    const total = sum(group);
    const have = avail(sku, location);
    if (total > have) {
      for (const l of group) {
        shortages.push({
          index: l.index,
          sku,
          location,
          requested: l.quantity,
          requestedTotal: total,
          available: have,
        });
      }
      continue;
    }
    available.set(keyOf(sku, location), have - total);
    for (const l of group)
      allocations.push({ index: l.index, sku, location, quantity: l.quantity, rule: 'explicit' });
  }

  // 2. Lines without a location, summed per sku, over active locations in priority order.
  const open = groupBy(
    lines.filter((l) => l.location === undefined),
    (l) => l.sku,
  );
  const locations = [
    ...new Map(
      candidates
        .filter((c) => c.active)
        .sort((a, b) => a.priority - b.priority || compare(a.location, b.location))
        .map((c) => [c.location, c.location]),
    ).values(),
  ];
  const demand = new Map([...open].map(([sku, group]) => [sku, sum(group)]));
  for (const [sku, total] of demand) {
    const have = locations.reduce((n, loc) => n + avail(sku, loc), 0);
    if (total > have) {
      for (const l of open.get(sku)!) {
        shortages.push({
          index: l.index,
          sku,
          location: null,
          requested: l.quantity,
          requestedTotal: total,
          available: have,
        });
      }
    }
  }
  if (shortages.length > 0) return { ok: false, shortages: shortages.sort((a, b) => a.index - b.index) };
  if (demand.size === 0) return { ok: true, allocations: sortByIndex(allocations) };

  const fits = (sku: string, loc: string) => avail(sku, loc) >= demand.get(sku)!;
  const skus = [...demand.keys()];
  const parts = new Map<string, { location: string; quantity: number; rule: AllocationRule }[]>();

  const single = locations.find((loc) => skus.every((sku) => fits(sku, loc)));
  if (single) {
    for (const sku of skus)
      parts.set(sku, [{ location: single, quantity: demand.get(sku)!, rule: 'single_location' }]);
  } else {
    const whole = skus.filter((sku) => locations.some((loc) => fits(sku, loc)));
    const chosen = smallestCover(whole, locations, fits);
    for (const sku of whole) {
      const loc = chosen.find((l) => fits(sku, l))!;
      parts.set(sku, [{ location: loc, quantity: demand.get(sku)!, rule: 'fewest_locations' }]);
    }
    // Split skus draw from the chosen locations first, then from the others, by priority.
    const order = [...chosen, ...locations.filter((l) => !chosen.includes(l))];
    for (const sku of skus.filter((s) => !whole.includes(s))) {
      let left = demand.get(sku)!;
      const taken: { location: string; quantity: number; rule: AllocationRule }[] = [];
      for (const loc of order) {
        const take = Math.min(left, avail(sku, loc));
        if (take <= 0) continue;
        taken.push({ location: loc, quantity: take, rule: 'split' });
        left -= take;
        if (left === 0) break;
      }
      parts.set(sku, taken);
    }
  }

  // 3. Hand each sku's parts out to its lines in order (a line may span two parts when split).
  for (const [sku, group] of open) {
    const queue = parts.get(sku)!.map((p) => ({ ...p }));
    for (const line of group) {
      let left = line.quantity;
      while (left > 0) {
        const part = queue[0]!;
        const take = Math.min(left, part.quantity);
        allocations.push({
          index: line.index,
          sku,
          location: part.location,
          quantity: take,
          rule: part.rule,
        });
        part.quantity -= take;
        left -= take;
        if (part.quantity === 0) queue.shift();
      }
    }
  }
  return { ok: true, allocations: sortByIndex(allocations) };
}

/**
 * The smallest set of locations serving each sku whole from one of them. Sets of each size are
 * tried in priority order, so the first cover found is the best-priority one among the smallest.
 */
function smallestCover(
  skus: string[],
  locations: string[],
  fits: (sku: string, loc: string) => boolean,
): string[] {
  if (skus.length === 0) return [];
  const useful = locations.filter((loc) => skus.some((sku) => fits(sku, loc)));
  let budget = maxCombinations;
  for (let size = 1; size <= useful.length; size++) {
    for (const set of combinations(useful, size)) {
      if (skus.every((sku) => set.some((loc) => fits(sku, loc)))) return set;
      if (--budget <= 0) return greedyCover(skus, useful, fits);
    }
  }
  return greedyCover(skus, useful, fits);
}

function greedyCover(
  skus: string[],
  locations: string[],
  fits: (sku: string, loc: string) => boolean,
): string[] {
  const left = new Set(skus);
  const chosen: string[] = [];
  while (left.size > 0) {
    let best = locations[0]!;
    let bestCount = -1;
    for (const loc of locations) {
      const count = [...left].filter((sku) => fits(sku, loc)).length;
      if (count > bestCount) [best, bestCount] = [loc, count];
    }
    chosen.push(best);
    for (const sku of [...left]) if (fits(sku, best)) left.delete(sku);
  }
  return locations.filter((l) => chosen.includes(l));
}

function* combinations<T>(items: T[], size: number, start = 0, prefix: T[] = []): Generator<T[]> {
  if (prefix.length === size) {
    yield prefix;
    return;
  }
  for (let i = start; i <= items.length - (size - prefix.length); i++) {
    yield* combinations(items, size, i + 1, [...prefix, items[i]!]);
  }
}

function groupBy<T>(items: T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = groups.get(k) ?? [];
    list.push(item);
    groups.set(k, list);
  }
  return groups;
}

const sum = (lines: RequestLine[]) => lines.reduce((n, l) => n + l.quantity, 0);
const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const sortByIndex = (allocations: Allocation[]) => allocations.sort((a, b) => a.index - b.index);
