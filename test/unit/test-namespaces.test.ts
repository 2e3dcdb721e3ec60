/**
 * The test support's namespace names carry their creation time, so the
 * global setup sweeps only what interrupted runs left: old test namespaces,
 * never a running run's, nor anything that is not a test namespace.
 */
import { describe, expect, test } from 'vitest';
import { staleTestNamespaces, testNamespaceName } from '../support/admin.js';

describe('test namespaces', () => {
  test('only test namespaces older than the bound are stale', () => {
    const now = Date.UTC(2026, 11, 3, 20, 0, 0);
    const old = testNamespaceName(now - 4 * 3600_000);
    const recent = testNamespaceName(now - 600_000);
    const names = [old, recent, 'sheaf-test-0123456789ab', 'default', 'sheaf-test-zz-notahex!', 'my-app'].map((n) => `public/${n}`);
    expect(staleTestNamespaces(names, now, 3 * 3600_000)).toEqual([old]);
  });
});
