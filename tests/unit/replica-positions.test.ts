import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stalenessMs } from '../../src/api/replica-reads.js';
import { parseLsn } from '../../src/db/wal-position.js';
import { createHorizonPositions } from '../../src/events/horizon-positions.js';

describe('WAL positions', () => {
  it('compare as positions, not as text', () => {
    expect(parseLsn('0/0')).toBe(0n);
    expect(parseLsn('16/B374D848')).toBe(0x16b374d848n);
    expect(parseLsn('0/A0') > parseLsn('0/9F')).toBe(true);
    expect(parseLsn('1/0') > parseLsn('0/FFFFFFFF')).toBe(true);
    expect(parseLsn('0/10') > parseLsn('0/F')).toBe(true);
    expect(parseLsn('b/1')).toBe(parseLsn('B/1'));
    expect(parseLsn(lsn(0x16b374d848n))).toBe(0x16b374d848n);
    for (const bad of ['', '0', '0/', '/0', '123456789/0', '0/0/0', 'G/0', ' 0/0']) {
      expect(() => parseLsn(bad)).toThrow(RangeError);
    }
  });

  it('an answer read earlier may be staler by the time since', () => {
    expect(stalenessMs({ replayed: 0n, lagMs: 2000, readAt: 10_000 }, 10_350)).toBe(2350);
    // A clock step backwards never makes it fresher than measured.
    expect(stalenessMs({ replayed: 0n, lagMs: 2000, readAt: 10_000 }, 9_000)).toBe(2000);
  });
});

/** A position as Postgres writes it. */
const lsn = (n: bigint) =>
  `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;

describe('horizons paired with positions', () => {
  it('a replica serves the newest horizon whose position it has replayed', () => {
    let now = 0;
    const positions = createHorizonPositions({ spacingMs: 50, now: () => now });
    expect(positions.coveredBy(1000n)).toBeUndefined();
    positions.record(10, lsn(100n));
    now = 100;
    positions.record(20, lsn(200n));
    now = 200;
    positions.record(20, lsn(250n)); // the same horizon at a later position: the earlier pair is better
    positions.record(15, lsn(300n)); // an older horizon (a proof that ended late): no better
    expect(positions.coveredBy(99n)).toBeUndefined();
    expect(positions.coveredBy(100n)).toBe(10);
    expect(positions.coveredBy(199n)).toBe(10);
    expect(positions.coveredBy(200n)).toBe(20);
    expect(positions.coveredBy(10_000n)).toBe(20);
  });

  it('keeps pairs spacingMs apart, the newest replaced meanwhile, for keepMs', () => {
    let now = 0;
    const positions = createHorizonPositions({ spacingMs: 50, keepMs: 1000, now: () => now });
    positions.record(1, lsn(10n));
    now = 10;
    positions.record(2, lsn(20n));
    now = 20;
    positions.record(3, lsn(30n)); // within 50 ms of the pair before the newest: replaces the newest
    expect(positions.coveredBy(25n)).toBe(1);
    expect(positions.coveredBy(30n)).toBe(3);
    now = 5000;
    positions.record(4, lsn(40n));
    // Older than keepMs: gone, but the newest is always kept.
    expect(positions.coveredBy(35n)).toBeUndefined();
    now = 100_000;
    positions.record(4, lsn(50n));
    expect(positions.coveredBy(40n)).toBe(4);
  });

  it('never names a horizon whose position the replica has not replayed (property)', () => {
    const call = fc.record({
      horizon: fc.integer({ min: 0, max: 1000 }),
      lsn: fc.bigInt({ min: 0n, max: 10_000n }),
      pauseMs: fc.integer({ min: 0, max: 120 }),
    });
    fc.assert(
      fc.property(
        fc.array(call, { maxLength: 200 }),
        fc.bigInt({ min: 0n, max: 11_000n }),
        (calls, replayed) => {
          let now = 0;
          const positions = createHorizonPositions({ spacingMs: 50, keepMs: 2000, now: () => now });
          for (const c of calls) {
            now += c.pauseMs;
            positions.record(c.horizon, lsn(c.lsn));
          }
          const horizon = positions.coveredBy(replayed);
          if (horizon !== undefined) {
            expect(calls.some((c) => c.horizon === horizon && c.lsn <= replayed)).toBe(true);
          }
          // A replica further on never gets an older horizon.
          const further = positions.coveredBy(replayed + 500n);
          if (horizon !== undefined) expect(further).toBeGreaterThanOrEqual(horizon);
        },
      ),
    );
  });
});
