import { DomainError } from '../errors/domain-error.js';
import type { OrderAction, OrderStatus } from '../schemas/orders.js';

/**
 * The order state machine: for each status, the actions it allows and the statuses each may lead
 * to. Which of those an action lands on is not chosen here: the database derives the status from
 * the lines and flags (`stockflow_order_status`), and `assertLanded` checks it is one of these.
 * An order is created `reserved`; `expire` is the reservation expiry's, never a route's.
 */
export const orderTransitions = {
  reserved: { confirm: ['confirmed'], cancel: ['cancelled'], expire: ['expired'] },
  confirmed: { fulfill: ['partially_fulfilled', 'fulfilled'], cancel: ['cancelled'] },
  partially_fulfilled: {
    fulfill: ['partially_fulfilled', 'fulfilled'],
    cancel: ['cancelled'],
    return: ['partially_fulfilled'],
  },
  fulfilled: { return: ['fulfilled'] },
  // Units fulfilled before the cancel can still come back.
  cancelled: { return: ['cancelled'] },
  expired: {},
} as const satisfies Record<OrderStatus, Partial<Record<OrderAction, readonly OrderStatus[]>>>;

type Targets = Partial<Record<OrderAction, readonly OrderStatus[]>>;

export function allowedActions(status: OrderStatus): OrderAction[] {
  return Object.keys(orderTransitions[status]) as OrderAction[];
}

/**
 * Fails `invalid_transition` unless `status` allows `action`; the details name the current status
 * and the actions it allows.
 */
export function assertTransition(orderNumber: string, status: OrderStatus, action: OrderAction): void {
  const targets: Targets = orderTransitions[status];
  if (targets[action]) return;
  const allowed = allowedActions(status);
  throw new DomainError(
    'invalid_transition',
    `Order ${orderNumber} is ${status} and cannot ${action}` +
      (allowed.length > 0 ? ` (allowed: ${allowed.join(', ')})` : ''),
    { orderNumber, currentStatus: status, action, allowedActions: allowed },
  );
}

/** Guards the table against the database: the status an action produced must be one it may lead to. */
export function assertLanded(orderNumber: string, from: OrderStatus, action: OrderAction, to: OrderStatus) {
  const targets: Targets = orderTransitions[from];
  if (!targets[action]?.includes(to)) {
    throw new Error(`Order ${orderNumber}: ${action} took it from ${from} to ${to}, which the table forbids`);
  }
}
