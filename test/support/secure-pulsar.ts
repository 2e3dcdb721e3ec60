/**
 * The secured broker of scripts/pulsar-secure.sh (token authentication,
 * authorization, TLS), for test/security. SHEAF_SECURE_PULSAR names its
 * directory; without it those tests are skipped, unless
 * SHEAF_REQUIRE_SECURE_PULSAR=1 (CI), which makes a missing broker a failure.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface SecureBroker {
  /** pulsar+ssl://localhost:…, the name the broker's certificate holds. */
  readonly tlsUrl: string;
  /** The same port by address: a host-name mismatch. */
  readonly tlsUrlByAddress: string;
  readonly plainUrl: string;
  readonly adminUrl: string;
  /** PEM of the CA that signed the broker's certificate, and of one that did not. */
  readonly caFile: string;
  readonly otherCaFile: string;
  readonly ca: string;
}

const dir = process.env.SHEAF_SECURE_PULSAR ?? '';
if (!dir && process.env.SHEAF_REQUIRE_SECURE_PULSAR === '1') {
  throw new Error(
    'SHEAF_REQUIRE_SECURE_PULSAR=1 but SHEAF_SECURE_PULSAR is not set: start scripts/pulsar-secure.sh and export its directory',
  );
}

export const noSecureBroker = (): boolean => dir === '';

export function secureBroker(): SecureBroker {
  const endpoints = JSON.parse(readFileSync(join(dir, 'endpoints.json'), 'utf8')) as Record<string, string>;
  return {
    tlsUrl: endpoints.tlsUrl!,
    tlsUrlByAddress: endpoints.tlsUrlByAddress!,
    plainUrl: endpoints.plainUrl!,
    adminUrl: endpoints.adminUrl!,
    caFile: join(dir, 'ca.pem'),
    otherCaFile: join(dir, 'other-ca.pem'),
    ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
  };
}

const base64url = (data: string | Buffer): string => Buffer.from(data).toString('base64url');

/**
 * A token for `subject`, signed as `bin/pulsar tokens create` signs it (HS256
 * with the broker's secret key), or with another key when `forged`.
 */
export function token(subject: string, options: { expiresInSeconds?: number; forged?: boolean } = {}): string {
  const key = options.forged ? Buffer.from(randomUUID()) : readFileSync(join(dir, 'secret.key'));
  const claims: Record<string, unknown> = { sub: subject };
  if (options.expiresInSeconds !== undefined) claims.exp = Math.floor(Date.now() / 1000) + options.expiresInSeconds;
  const unsigned = `${base64url(JSON.stringify({ alg: 'HS256' }))}.${base64url(JSON.stringify(claims))}`;
  return `${unsigned}.${createHmac('sha256', key).update(unsigned).digest('base64url')}`;
}

/** The broker's admin REST API as its super-user. */
async function admin(method: 'PUT' | 'POST' | 'GET' | 'DELETE', path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${secureBroker().adminUrl}/admin/v2/${path}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${readFileSync(join(dir, 'admin.token'), 'utf8').trim()}` },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  const text = await response.text();
  return text ? (JSON.parse(text) as unknown) : undefined;
}

/** A new namespace under `public` with these roles granted these actions on it (as docs/security.md grants them). */
export async function securedNamespace(grants: Record<string, Array<'produce' | 'consume'>>): Promise<string> {
  const namespace = `sec-${randomUUID().slice(0, 8)}`;
  await admin('PUT', `namespaces/public/${namespace}`);
  for (const [role, actions] of Object.entries(grants)) await admin('POST', `namespaces/public/${namespace}/permissions/${role}`, actions);
  return namespace;
}

/** Deletes a namespace made by `securedNamespace`: its topics first (the broker refuses otherwise). */
export async function deleteSecuredNamespace(namespace: string): Promise<void> {
  const topics = (await admin('GET', `namespaces/public/${namespace}/topics`)) as string[];
  for (const topic of topics) {
    await admin('DELETE', `persistent/public/${namespace}/${topic.split('/').pop()!}?force=true`).catch((error: unknown) => {
      if (!String(error).includes('404')) throw error;
    });
  }
  await admin('DELETE', `namespaces/public/${namespace}`);
}
