/**
 * The secured broker of scripts/pulsar-secure.sh (token authentication,
 * authorization, TLS), for test/security. SHEAF_SECURE_PULSAR names its
 * directory; without it those tests are skipped, unless
 * SHEAF_REQUIRE_SECURE_PULSAR=1 (CI), which makes a missing broker a failure.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminAt, deleteNamespace } from './pulsar.js';

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

/** The secured broker's admin REST API as its super-user. */
const secureAdmin = adminAt(
  () => secureBroker().adminUrl,
  () => readFileSync(join(dir, 'admin.token'), 'utf8').trim(),
);

/** A new namespace under `public` with these roles granted these actions on it (as docs/security.md grants them). */
export async function securedNamespace(grants: Record<string, Array<'produce' | 'consume'>>): Promise<string> {
  const namespace = `sec-${randomUUID().slice(0, 8)}`;
  await secureAdmin('PUT', `namespaces/public/${namespace}`);
  for (const [role, actions] of Object.entries(grants))
    await secureAdmin('POST', `namespaces/public/${namespace}/permissions/${role}`, actions);
  return namespace;
}

/** Deletes a namespace made by `securedNamespace`, topics first. */
export const deleteSecuredNamespace = (namespace: string): Promise<void> => deleteNamespace(namespace, secureAdmin);
