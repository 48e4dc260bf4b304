// biome-ignore-all lint/correctness/noPrecisionLoss: AS 241's coefficients as published (more digits than a double keeps)
/**
 * The arithmetic of reordering, as pure functions: the normal quantile, the auto reorder point
 * from daily demand, and the order quantity with each of its terms (stored on the PO line).
 */

import type { QuantityTerms } from '../schemas/purchase-orders.js';
import type { PointExplanation } from '../schemas/reorder.js';

const polynomial = (coefficients: readonly number[], x: number) =>
  coefficients.reduceRight((sum, c) => sum * x + c, 0);

// Wichura, Algorithm AS 241 (PPND16), Applied Statistics 37 (1988) 477-484: the inverse of the
// standard normal CDF to about 1e-16 relative error (the algorithm R's qnorm uses). Coefficients
// are lowest degree first.
const centralA = [
  3.387132872796366608, 133.14166789178437745, 1971.5909503065514427, 13731.693765509461125,
  45921.953931549871457, 67265.770927008700853, 33430.575583588128105, 2509.0809287301226727,
];
const centralB = [
  1, 42.313330701600911252, 687.1870074920579083, 5394.1960214247511077, 21213.794301586595867,
  39307.89580009271061, 28729.085735721942674, 5226.495278852545925,
];
const nearA = [
  1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055, 3.64784832476320460504,
  1.27045825245236838258, 0.24178072517745061177, 0.0227238449892691845833, 7.7454501427834140764e-4,
];
const nearB = [
  1, 2.05319162663775882187, 1.6763848301838038494, 0.68976733498510000455, 0.14810397642748007459,
  0.0151986665636164571966, 5.475938084995344946e-4, 1.05075007164441684324e-9,
];
const tailA = [
  6.6579046435011037772, 5.4637849111641143699, 1.7848265399172913358, 0.29656057182850489123,
  0.026532189526576123093, 0.0012426609473880784386, 2.71155556874348757815e-5, 2.01033439929228813265e-7,
];
const tailB = [
  1, 0.59983220655588793769, 0.13692988092273580531, 0.0148753612908506148525, 7.868691311456132591e-4,
  1.8463183175100546818e-5, 1.4215117583164458887e-7, 2.04426310338993978564e-15,
];

/** z such that P(Z <= z) = p for a standard normal Z (0 < p < 1). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile needs 0 < p < 1, got ${p}`);
  const q = p - 0.5;
  if (Math.abs(q) <= 0.425) {
    const r = 0.180625 - q * q;
    return (q * polynomial(centralA, r)) / polynomial(centralB, r);
  }
  let r = Math.sqrt(-Math.log(q < 0 ? p : 1 - p));
  let z: number;
  if (r <= 5) {
    r -= 1.6;
    z = polynomial(nearA, r) / polynomial(nearB, r);
  } else {
    r -= 5;
    z = polynomial(tailA, r) / polynomial(tailB, r);
  }
  return q < 0 ? -z : z;
}

export interface DemandStats {
  /** Days in the window (zero-demand days included). */
  days: number;
  total: number;
  mean: number;
  /** Sample standard deviation (n − 1) of the daily demand; 0 for a one-day window. */
  stdDev: number;
}

export function demandStats(daily: readonly number[]): DemandStats {
  const days = daily.length;
  const total = daily.reduce((sum, d) => sum + d, 0);
  const mean = days === 0 ? 0 : total / days;
  const squares = daily.reduce((sum, d) => sum + (d - mean) ** 2, 0);
  return { days, total, mean, stdDev: days > 1 ? Math.sqrt(squares / (days - 1)) : 0 };
}

// Floating error must not push an exact whole number to the next unit (40.000000000004 → 40).
const ceilUnits = (x: number) => Math.max(0, Math.ceil(x - 1e-9));

/**
 * point = mean daily demand × L + z × σ(daily demand) × √L, rounded up to a whole unit, where L is
 * the supplier's lead time in days and z the normal quantile of the service level.
 */
export function autoReorderPoint(input: {
  daily: readonly number[];
  leadTimeDays: number;
  serviceLevel: number;
}): PointExplanation & { mode: 'auto' } {
  const stats = demandStats(input.daily);
  const z = normalQuantile(input.serviceLevel);
  const leadTimeDemand = stats.mean * input.leadTimeDays;
  const safetyBuffer = z * stats.stdDev * Math.sqrt(input.leadTimeDays);
  const exact = leadTimeDemand + safetyBuffer;
  return {
    mode: 'auto',
    point: ceilUnits(exact),
    serviceLevel: input.serviceLevel,
    z,
    leadTimeDays: input.leadTimeDays,
    windowDays: stats.days,
    demandTotal: stats.total,
    meanDailyDemand: stats.mean,
    stdDevDailyDemand: stats.stdDev,
    leadTimeDemand,
    safetyBuffer,
    exact,
  };
}

/**
 * quantity = reorderQuantity, or maxLevel − (available + incoming); then at least the supplier's
 * minimum order quantity; then rounded up to a multiple of its order multiple. A raw quantity of
 * 0 or less orders nothing (quantity 0): the caller records that as a skip.
 */
export function orderQuantity(input: {
  reorderPoint: number;
  available: number;
  incoming: number;
  reorderQuantity: number | null;
  maxLevel: number | null;
  minOrderQuantity: number;
  orderMultiple: number;
}): QuantityTerms {
  const basis = input.reorderQuantity !== null ? 'reorder_quantity' : 'max_level';
  const rawQuantity =
    input.reorderQuantity ?? Math.max(0, (input.maxLevel ?? 0) - (input.available + input.incoming));
  const atLeast = rawQuantity > 0 ? Math.max(rawQuantity, input.minOrderQuantity) : 0;
  const quantity = Math.ceil(atLeast / input.orderMultiple) * input.orderMultiple;
  return { basis, ...input, rawQuantity, quantity };
}

/** The computation in words, for people reading a PO line. */
export function explainQuantity(t: QuantityTerms): string {
  const position = t.available + t.incoming;
  const raw =
    t.basis === 'reorder_quantity'
      ? `reorder quantity ${t.rawQuantity}`
      : `max level ${t.maxLevel} − (available ${t.available} + incoming ${t.incoming}) = ${t.rawQuantity}`;
  const atLeast = Math.max(t.rawQuantity, t.minOrderQuantity);
  return (
    `available ${t.available} + incoming ${t.incoming} = ${position} ≤ reorder point ${t.reorderPoint}; ` +
    `${raw}; at least the minimum order ${t.minOrderQuantity} → ${atLeast}; ` +
    `rounded up to a multiple of ${t.orderMultiple} → ${t.quantity}`
  );
}
