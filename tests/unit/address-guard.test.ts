import { describe, expect, it } from 'vitest';
import {
  connectGuard,
  isPublicAddress,
  nonPublicRange,
  refuseUrl,
} from '../../src/outbound/address-guard.js';
import { addressTable, literalUrl } from '../helpers/address-table.js';

describe('address classification (ipaddr.js)', () => {
  it('covers at least 40 addresses', () => {
    expect(addressTable.length).toBeGreaterThanOrEqual(40);
  });

  it.each(addressTable)('$address is public: $public ($why)', ({ address, public: isPublic }) => {
    expect(isPublicAddress(address)).toBe(isPublic);
    expect(nonPublicRange(address) === undefined).toBe(isPublic);
  });

  it('refuses what is not an address at all', () => {
    expect(isPublicAddress('not an ip')).toBe(false);
  });
});

describe('registration check (refuseUrl)', () => {
  it.each(addressTable)('$address literal (public: $public)', ({ address, public: isPublic }) => {
    const reason = refuseUrl(literalUrl(address), false);
    if (isPublic) expect(reason).toBeUndefined();
    else expect(reason).toMatch(/non-public address/);
    expect(refuseUrl(literalUrl(address), true)).toBeUndefined();
  });

  it('refuses localhost names, other schemes and credentials', () => {
    for (const host of ['localhost', 'localhost.', 'LOCALHOST', 'api.localhost', 'api.localhost.']) {
      expect(refuseUrl(`http://${host}:8080/x`, false), host).toMatch(/localhost/);
    }
    // Numeric host forms the URL parser normalises to a dotted address.
    for (const url of ['http://2130706433/', 'http://0x7f.1/', 'http://017700000001/', 'http://127.1/']) {
      expect(refuseUrl(url, false), url).toMatch(/loopback/);
    }
    expect(refuseUrl('https://hooks.example.com/pms', false)).toBeUndefined();
    expect(refuseUrl('ftp://example.com/x', false)).toMatch(/http or https/);
    expect(refuseUrl('https://user:pw@example.com/x', false)).toMatch(/credentials/);
    expect(refuseUrl('not a url', true)).toMatch(/valid URL/);
  });
});

describe('connect-time guard', () => {
  const policy = { allowPrivate: false, setting: 'X_ALLOW_PRIVATE' };
  it('refuses non-public literals and localhost before a lookup, naming only the host', () => {
    expect(() => connectGuard(new URL('http://[::ffff:7f00:1]/'), policy)).toThrow(/refused ::ffff:7f00:1/);
    expect(() => connectGuard(new URL('http://localhost./'), policy)).toThrow(/X_ALLOW_PRIVATE/);
    expect(connectGuard(new URL('http://hooks.example.com/'), policy)).toBeTypeOf('function');
    expect(connectGuard(new URL('http://127.0.0.1/'), { ...policy, allowPrivate: true })).toBeUndefined();
  });

  it('refuses a name that resolves to loopback, without echoing the address', async () => {
    const lookup = connectGuard(new URL('http://localhost.test/'), policy)!;
    // `localhost` resolves to loopback through the system resolver: refused after DNS.
    const error = await new Promise<Error | null>((resolve) =>
      lookup('localhost', { all: true }, (err) => resolve(err)),
    );
    expect(error?.message).toMatch(/refused localhost: it is or resolves to a non-public address/);
    expect(error?.message).not.toMatch(/127\.0\.0\.1|::1/);
  });
});
