/**
 * The brokers' admin REST API as the tests use it, with no Vitest import, so
 * that the global setup can use it too: calls, namespace deletion, and the
 * names of test namespaces, which carry their creation time so that those an
 * interrupted run left behind can be told apart and swept.
 */
import { randomUUID } from 'node:crypto';

/** A call to a broker's REST API: a path under /admin/v2/ (or /lookup/v2/ when it starts with `lookup/`), a JSON body. */
export type AdminCall = (method: 'PUT' | 'POST' | 'GET' | 'DELETE', path: string, body?: unknown) => Promise<unknown>;

/**
 * An `AdminCall` to the broker whose web service is at `webUrl()`
 * (http://host:port), as the role of `token()` when given. Each call is
 * bounded; a refusal throws with the broker's answer.
 */
export function adminAt(webUrl: () => string, token?: () => string): AdminCall {
  return async (method, path, body) => {
    const url = path.startsWith('lookup/') ? `${webUrl()}/${path}` : `${webUrl()}/admin/v2/${path}`;
    const response = await fetch(url, {
      method,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token()}` } : {}) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    const text = await response.text();
    return text ? (JSON.parse(text) as unknown) : undefined;
  };
}

/**
 * Deletes a test's namespace and everything in it: partitioned topics, then
 * the remaining topics, then the namespace (a default broker refuses to
 * force-delete a namespace that still has topics), through `call`.
 */
export async function deleteNamespace(namespace: string, call: AdminCall): Promise<void> {
  const base = `persistent/public/${namespace}`;
  const partitioned = (await call('GET', `${base}/partitioned`)) as string[];
  for (const topic of partitioned) await call('DELETE', `${base}/${topic.split('/').pop()!}/partitions?force=true`);
  const topics = (await call('GET', `namespaces/public/${namespace}/topics`)) as string[];
  for (const topic of topics) {
    await call('DELETE', `${base}/${topic.split('/').pop()!}?force=true`).catch((error: unknown) => {
      // A partition of a topic deleted above is already gone.
      if (!String(error).includes('404')) throw error;
    });
  }
  await call('DELETE', `namespaces/public/${namespace}`);
}

/** Test namespaces are `sheaf-test-<creation time, base-36 seconds>-<random>`. */
const TEST_NAMESPACE = /^sheaf-test-([0-9a-z]+)-[0-9a-f]{8}$/;

/** A new test namespace's name (under `public`). */
export function testNamespaceName(now = Date.now()): string {
  return `sheaf-test-${Math.floor(now / 1000).toString(36)}-${randomUUID().slice(0, 8)}`;
}

/**
 * The test namespaces among `names` (`public/...`) created more than
 * `olderThanMs` ago: no run lasts that long, so their run was interrupted.
 */
export function staleTestNamespaces(names: readonly string[], now: number, olderThanMs: number): string[] {
  return names.flatMap((name) => {
    const local = name.slice(name.indexOf('/') + 1);
    const match = TEST_NAMESPACE.exec(local);
    if (!match) return [];
    return now - parseInt(match[1]!, 36) * 1000 > olderThanMs ? [local] : [];
  });
}

/** Deletes the test namespaces interrupted runs left on the broker at `webUrl`; returns how many. */
export async function sweepStaleTestNamespaces(webUrl: string, olderThanMs = 3 * 3600_000): Promise<number> {
  const call = adminAt(() => webUrl);
  const stale = staleTestNamespaces((await call('GET', 'namespaces/public')) as string[], Date.now(), olderThanMs);
  for (const namespace of stale) await deleteNamespace(namespace, call);
  return stale.length;
}
