import type { Knex } from 'knex';
import { DomainError } from '../errors/domain-error.js';
import { appendEvent } from '../events/outbox.js';
import { cursors } from '../schemas/fields.js';
import type {
  LastCheck,
  PointExplanation,
  ReorderRule,
  ReorderRuleInput,
  RuleStock,
} from '../schemas/reorder.js';
import { lockLevels } from './inventory/lock.js';
import { assertKnown } from './inventory/planner.js';
import { availableOf, type LevelKey, levelKey } from './levels.js';
import { autoReorderPoint } from './reorder-point.js';

export interface RuleRow {
  id: number;
  sku: string;
  location: string;
  supplier_code: string;
  point_mode: 'fixed' | 'auto';
  reorder_point: number | null;
  service_level: string | null;
  window_days: number;
  reorder_quantity: number | null;
  max_level: number | null;
  version: number;
  created_at: Date;
  updated_at: Date;
}

/** A rule with what the planner needs to judge it: its supplier, its level, its product. */
export interface RuleState {
  rule: RuleRow;
  supplier: {
    code: string;
    active: boolean;
    leadTimeDays: number;
    minOrderQuantity: number;
    orderMultiple: number;
  };
  productArchived: boolean;
  stock: RuleStock;
  point: PointExplanation;
  /** available + incoming at or below the point: the planner would order. */
  due: boolean;
}

/**
 * Daily demand (units sold: `sale` and `commit` movements) of each level over its window, most
 * recent day first. Day i is the 24 hours ending i days before now, so a window is always whole
 * days and the latest sales count at once; days without sales count as 0.
 */
export async function loadDailyDemand(
  db: Knex,
  keys: (LevelKey & { windowDays: number })[],
): Promise<Map<string, number[]>> {
  const demand = new Map<string, number[]>();
  if (keys.length === 0) return demand;
  const { rows } = await db.raw<{ rows: { sku: string; location: string; day: number; units: number }[] }>(
    `select k.sku, k.location, d.day,
            coalesce((select -sum(m.delta) from stock_movements m
                      where m.sku = k.sku and m.location = k.location and m.kind in ('sale', 'commit')
                        and m.created_at > now() - make_interval(days => d.day + 1)
                        and m.created_at <= now() - make_interval(days => d.day)), 0)::bigint as units
     from unnest(?::text[], ?::text[], ?::int[]) as k (sku, location, window_days)
     cross join lateral generate_series(0, k.window_days - 1) as d (day)
     order by k.sku, k.location, d.day`,
    [keys.map((k) => k.sku), keys.map((k) => k.location), keys.map((k) => k.windowDays)],
  );
  for (const row of rows) {
    const key = levelKey(row);
    const list = demand.get(key) ?? [];
    list.push(row.units);
    demand.set(key, list);
  }
  return demand;
}

type StateRow = RuleRow & {
  supplier_active: boolean;
  lead_time_days: number;
  min_order_quantity: number;
  order_multiple: number;
  product_status: string;
  on_hand: number;
  reserved: number;
  safety_stock: number;
  incoming: number;
};

/** The rules matching `where` with their current figures and reorder point, in id order. */
export async function loadRuleStates(
  db: Knex,
  where: {
    ids?: number[];
    levels?: LevelKey[];
    sku?: string;
    location?: string;
    supplier?: string;
    afterId?: number;
    limit?: number;
  },
): Promise<RuleState[]> {
  const query = db('reorder_rules as r')
    .join('suppliers as s', 's.code', 'r.supplier_code')
    .join('inventory_levels as l', (j) => j.on('l.sku', 'r.sku').andOn('l.location', 'r.location'))
    .join('products as p', 'p.sku', 'r.sku')
    .select(
      'r.*',
      's.active as supplier_active',
      's.lead_time_days',
      's.min_order_quantity',
      's.order_multiple',
      'p.status as product_status',
      'l.on_hand',
      'l.reserved',
      'l.safety_stock',
      'l.incoming',
    )
    .orderBy('r.id');
  if (where.ids) query.whereIn('r.id', where.ids);
  if (where.levels) {
    query.whereRaw('(r.sku, r.location) in (select * from unnest(?::text[], ?::text[]))', [
      where.levels.map((k) => k.sku),
      where.levels.map((k) => k.location),
    ]);
  }
  if (where.sku) query.where('r.sku', where.sku);
  if (where.location) query.where('r.location', where.location);
  if (where.supplier) query.where('r.supplier_code', where.supplier);
  if (where.afterId !== undefined) query.where('r.id', '>', where.afterId);
  if (where.limit !== undefined) query.limit(where.limit);
  const rows = (await query) as StateRow[];
  const demand = await loadDailyDemand(
    db,
    rows
      .filter((r) => r.point_mode === 'auto')
      .map((r) => ({ sku: r.sku, location: r.location, windowDays: r.window_days })),
  );
  return rows.map((row) => {
    const available = availableOf(row);
    const position = available + row.incoming;
    const point: PointExplanation =
      row.point_mode === 'fixed'
        ? { mode: 'fixed', point: row.reorder_point! }
        : autoReorderPoint({
            daily: demand.get(levelKey(row)) ?? [],
            leadTimeDays: row.lead_time_days,
            serviceLevel: Number(row.service_level),
          });
    return {
      rule: row,
      supplier: {
        code: row.supplier_code,
        active: row.supplier_active,
        leadTimeDays: row.lead_time_days,
        minOrderQuantity: row.min_order_quantity,
        orderMultiple: row.order_multiple,
      },
      productArchived: row.product_status === 'archived',
      stock: { onHand: row.on_hand, reserved: row.reserved, available, incoming: row.incoming, position },
      point,
      due: position <= point.point,
    };
  });
}

async function lastChecks(db: Knex, ruleIds: number[]): Promise<Map<number, LastCheck>> {
  const rows = await db('reorder_rule_checks').whereIn('rule_id', ruleIds);
  return new Map(
    rows.map((r) => [
      Number(r.rule_id),
      {
        at: (r.checked_at as Date).toISOString(),
        outcome: r.outcome,
        reason: r.skip_reason,
        reorderPoint: r.reorder_point,
        position: r.position,
        purchaseOrderId: r.purchase_order_id,
      },
    ]),
  );
}

function toRule(state: RuleState, lastCheck: LastCheck | undefined): ReorderRule {
  const r = state.rule;
  return {
    id: r.id,
    sku: r.sku,
    location: r.location,
    supplier: r.supplier_code,
    reorderPoint: r.point_mode === 'auto' ? 'auto' : r.reorder_point!,
    serviceLevel: r.service_level === null ? null : Number(r.service_level),
    windowDays: r.point_mode === 'auto' ? r.window_days : null,
    reorderQuantity: r.reorder_quantity,
    maxLevel: r.max_level,
    stock: state.stock,
    point: state.point,
    due: state.due,
    lastCheck: lastCheck ?? null,
    version: r.version,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

/** Rules with their figures, in id order, keyset-paginated (`cursor`: the last id, decoded by `cursors.reorderRule`). */
export async function listRules(
  db: Knex,
  query: { sku?: string; location?: string; supplier?: string; limit: number; cursor?: number },
): Promise<{ items: ReorderRule[]; nextCursor: string | null }> {
  const states = await loadRuleStates(db, { ...query, afterId: query.cursor, limit: query.limit + 1 });
  const page = states.slice(0, query.limit);
  const checks = await lastChecks(
    db,
    page.map((s) => s.rule.id),
  );
  return {
    items: page.map((s) => toRule(s, checks.get(s.rule.id))),
    nextCursor:
      states.length > query.limit ? cursors.reorderRule.encode(page[page.length - 1]!.rule.id) : null,
  };
}

export async function getRule(db: Knex, id: number): Promise<ReorderRule | undefined> {
  const [state] = await loadRuleStates(db, { ids: [id] });
  if (!state) return undefined;
  return toRule(state, (await lastChecks(db, [id])).get(id));
}

/**
 * Copies the rule's point onto its level (`inventory_levels.reorder_point`), where the stock triggers
 * read their low-stock threshold: the fixed point, else the point of the rule's last check (an
 * automatic rule before its first check has none, and its level falls back to its safety stock).
 * Called in the transaction that sets the rule or records a check; writes only when it changed, so
 * an unchanged point does not lock the level.
 */
export async function storeLevelReorderPoint(db: Knex, ruleId: number): Promise<void> {
  await db.raw(
    `update inventory_levels l set reorder_point = p.point
     from (select r.sku, r.location, coalesce(r.reorder_point, c.reorder_point) as point
           from reorder_rules r left join reorder_rule_checks c on c.rule_id = r.id
           where r.id = ?) p
     where l.sku = p.sku and l.location = p.location and l.reorder_point is distinct from p.point`,
    [ruleId],
  );
}

/** Creates or replaces the rule of a sku at a location. */
export async function setRule(
  db: Knex,
  input: ReorderRuleInput,
  defaults: { windowDays: number },
): Promise<ReorderRule> {
  const { unknownSkus, unknownLocations } = await lockLevels(db, [input]);
  assertKnown([input], unknownSkus, unknownLocations);
  const supplier = await db('suppliers').where({ code: input.supplier }).first('code');
  if (!supplier) {
    throw new DomainError('not_found', `Supplier ${input.supplier} does not exist`, {
      supplier: input.supplier,
    });
  }
  const auto = input.reorderPoint === 'auto';
  const fields = {
    supplier_code: input.supplier,
    point_mode: auto ? 'auto' : 'fixed',
    reorder_point: auto ? null : input.reorderPoint,
    service_level: auto ? input.serviceLevel : null,
    window_days: input.windowDays ?? defaults.windowDays,
    reorder_quantity: input.reorderQuantity ?? null,
    max_level: input.maxLevel ?? null,
  };
  const { rows } = await db.raw<{ rows: { id: number }[] }>(
    `insert into reorder_rules (sku, location, supplier_code, point_mode, reorder_point, service_level, window_days,
       reorder_quantity, max_level)
     values (?, ?, ?, ?, ?, ?, ?, ?, ?)
     on conflict (sku, location) do update set supplier_code = excluded.supplier_code,
       point_mode = excluded.point_mode, reorder_point = excluded.reorder_point,
       service_level = excluded.service_level, window_days = excluded.window_days,
       reorder_quantity = excluded.reorder_quantity, max_level = excluded.max_level
     returning id`,
    [
      input.sku,
      input.location,
      fields.supplier_code,
      fields.point_mode,
      fields.reorder_point,
      fields.service_level ?? null,
      fields.window_days,
      fields.reorder_quantity,
      fields.max_level,
    ],
  );
  await storeLevelReorderPoint(db, rows[0]!.id);
  const rule = (await getRule(db, rows[0]!.id))!;
  await appendEvent(db, {
    type: 'reorder_rule.set',
    aggregate: { type: 'reorder_rule', id: String(rule.id) },
    data: { rule },
  });
  return rule;
}
