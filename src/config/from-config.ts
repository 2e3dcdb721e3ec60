/**
 * What a loaded `sheaf.yml` builds: the logger, the transport, and a factory
 * per service executor (its module imported, its export checked). The worker
 * and client call these from their `fromConfigFile`; whatever is built here
 * is owned, and closed, by them.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino, type Logger } from 'pino';
import pinoPretty from 'pino-pretty';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { InMemoryTransport } from '../transport/memory/in-memory-transport.js';
import { PulsarTransport } from '../transport/pulsar/pulsar-transport.js';
import type { Transport } from '../transport/transport.js';
import type { ServiceOptions } from '../worker/options.js';
import { loadConfigFile, type LoadedConfig } from './load.js';
import type { SheafConfig } from './schema.js';
import { executorSettingsOf } from './executor-schema.js';

export interface FromConfigOptions {
  /** Environment for `${VAR}` interpolation. Default: process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Use this logger instead of the one the `logs` block describes. */
  readonly logger?: Logger;
  /** Where the `logs` block's logger writes. Default: stdout. */
  readonly logStream?: NodeJS.WritableStream;
  /** Log errors with their stacks (`--verbose`). Default: one line each, `Name: message`. */
  readonly verboseErrors?: boolean;
}

/** An error as one line: what operators read in a log; the stack is for `--verbose`. */
function oneLineError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? ` (cause: ${error.cause.message})` : '';
  return `${error.name}: ${error.message}${cause}`.replace(/\s*\n\s*/g, ' ');
}

export function createLogger(logs: SheafConfig['logs'], stream: NodeJS.WritableStream = process.stdout, verboseErrors = false): Logger {
  const level = logs?.level ?? 'info';
  const pretty = logs?.pretty ?? Boolean((stream as NodeJS.WriteStream).isTTY);
  const options = { name: 'sheaf', level, serializers: { err: verboseErrors ? pino.stdSerializers.err : oneLineError } };
  if (!pretty) return pino(options, stream as NodeJS.WritableStream & { write: (s: string) => boolean });
  return pino(options, pinoPretty({ colorize: Boolean((stream as NodeJS.WriteStream).isTTY), destination: stream, sync: true }));
}

/**
 * The token of `pulsar.authentication`: the string itself, or a function that
 * reads `tokenFile` (resolved from the config's folder) each time it is asked,
 * so a rotated file is picked up. Undefined without authentication. Used by
 * the transport and by the admin calls of `sheaf setup` and `dlq replay`.
 */
export function configuredToken(loaded: LoadedConfig): string | (() => Promise<string>) | undefined {
  const auth = loaded.config.pulsar?.authentication;
  if (!auth) return undefined;
  if (auth.token) return auth.token;
  if (!auth.tokenFile) return undefined;
  const file = resolveFrom(loaded.directory, auth.tokenFile);
  return async () => (await readFile(file, 'utf8')).trim();
}

/** Whether every host of a service URL is this machine (a token sent there in the clear stays on it). */
function isLoopback(serviceUrl: string): boolean {
  const hosts = serviceUrl
    .replace(/^[a-z+]+:\/\//, '')
    .split('/')[0]!
    .split(',');
  return hosts.every((hostPort) => {
    const host = hostPort.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    return host === 'localhost' || host === '::1' || /^127\./.test(host);
  });
}

export async function createTransport(loaded: LoadedConfig, logger: Logger): Promise<Transport> {
  const { config, directory } = loaded;
  if ((config.transport ?? 'inMemory') === 'inMemory') return new InMemoryTransport();
  const p = config.pulsar!;
  const issues: ConfigIssue[] = [];
  const readPem = async (key: 'caFile' | 'certFile' | 'keyFile'): Promise<string | undefined> => {
    const file = p.tls?.[key];
    if (!file) return undefined;
    const path = resolveFrom(directory, file);
    try {
      return await readFile(path, 'utf8');
    } catch (error) {
      issues.push({ path: `pulsar.tls.${key}`, message: `cannot read ${path}: ${(error as Error).message}` });
      return undefined;
    }
  };
  const [ca, cert, key] = await Promise.all([readPem('caFile'), readPem('certFile'), readPem('keyFile')]);
  const token = configuredToken(loaded);
  if (p.authentication && token === undefined) {
    issues.push({ path: 'pulsar.authentication', message: 'needs token or tokenFile' });
  }
  if (p.authentication?.tokenFile) {
    // Checked now, as caFile is: a missing file would otherwise fail only at the first connection.
    const file = resolveFrom(directory, p.authentication.tokenFile);
    const content = await readFile(file, 'utf8').then(
      (text) => text.trim(),
      (error: unknown) => {
        issues.push({ path: 'pulsar.authentication.tokenFile', message: `cannot read ${file}: ${(error as Error).message}` });
        return null;
      },
    );
    if (content === '') issues.push({ path: 'pulsar.authentication.tokenFile', message: `${file} is empty; it must hold the token` });
  }
  if (issues.length > 0) throw new ConfigError(issues, { source: loaded.path });
  if (token !== undefined && p.brokerServiceUrl.startsWith('pulsar://') && !isLoopback(p.brokerServiceUrl)) {
    logger.warn(
      { brokerServiceUrl: p.brokerServiceUrl },
      'the token is sent unencrypted (pulsar:// to a host that is not this machine); use pulsar+ssl:// with a tls block',
    );
  }
  return new PulsarTransport({
    brokerServiceUrl: p.brokerServiceUrl,
    ...(p.tenant ? { tenant: p.tenant } : {}),
    ...(p.namespace ? { namespace: p.namespace } : {}),
    ...(token !== undefined ? { authentication: { token } } : {}),
    ...(p.tls
      ? {
          tls: {
            ...(ca ? { ca } : {}),
            ...(cert ? { cert } : {}),
            ...(key ? { key } : {}),
            ...(p.tls.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: p.tls.rejectUnauthorized }),
          },
        }
      : {}),
    ...(p.connectThroughServiceUrl === undefined ? {} : { connectThroughServiceUrl: p.connectThroughServiceUrl }),
    ...(p.connectTimeoutSeconds ? { connectTimeoutSeconds: p.connectTimeoutSeconds } : {}),
    ...(p.operationTimeoutSeconds ? { operationTimeoutSeconds: p.operationTimeoutSeconds } : {}),
    ...(p.keepAliveIntervalSeconds ? { keepAliveIntervalSeconds: p.keepAliveIntervalSeconds } : {}),
    ...(p.nackRedeliveryDelayMs === undefined ? {} : { nackRedeliveryDelayMs: p.nackRedeliveryDelayMs }),
    ...(p.producer ? { producer: p.producer } : {}),
    ...(p.consumer ? { consumer: p.consumer } : {}),
    logger,
  });
}

/** Imports each executor's module and checks its export; every problem names the path it tried. */
export async function loadServices(loaded: LoadedConfig): Promise<ServiceOptions[]> {
  const issues: ConfigIssue[] = [];
  const services: ServiceOptions[] = [];
  const indexOf = new Map((loaded.config.services ?? []).map((s, i) => [s.name, i]));
  for (const [name, executor] of loaded.executors) {
    const at = `services[${indexOf.get(name)}].executor`;
    const path = resolveFrom(loaded.directory, executor.module);
    let module: Record<string, unknown>;
    try {
      module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    } catch (error) {
      // The module's own imports can be missing too (a dependency not installed): only a missing file is "no such file".
      const reason =
        (error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && !existsSync(path) ? 'no such file' : (error as Error).message;
      issues.push({ path: `${at}.module`, message: `cannot load ${path}: ${reason} (module paths are resolved from ${loaded.directory})` });
      continue;
    }
    const exported = module[executor.export];
    if (typeof exported !== 'function') {
      const available = Object.keys(module).filter((k) => typeof module[k] === 'function');
      issues.push({
        path: `${at}.export`,
        message: `${path} has no exported class '${executor.export}'${available.length ? ` (it exports: ${available.join(', ')})` : ''}`,
      });
      continue;
    }
    const ServiceClass = exported as new () => object;
    const { module: _m, export: _e, ...compiled } = executor;
    services.push({ name, executor: { factory: () => new ServiceClass(), ...executorSettingsOf(compiled) } });
  }
  if (issues.length > 0) throw new ConfigError(issues, { source: loaded.path });
  return services;
}

export interface ConfigSetup {
  readonly loaded: LoadedConfig;
  readonly logger: Logger;
  readonly transport: Transport;
  /** Closes what was built here (the transport). */
  close(): Promise<void>;
}

/**
 * In-memory transports built from one config file, shared within the process:
 * a worker and a client that both call `fromConfigFile('sheaf.yml')` must meet
 * on the same in-memory topics (two separate ones would never see each other).
 */
const sharedInMemory = new Map<string, { transport: Transport; users: number }>();

/** Loads the file and builds its logger and transport (an in-memory one shared per file in this process). */
export async function setupFromConfigFile(path: string, options: FromConfigOptions = {}): Promise<ConfigSetup> {
  const loaded = await loadConfigFile(path, options.env);
  const logger = options.logger ?? createLogger(loaded.config.logs, options.logStream, options.verboseErrors ?? false);
  if ((loaded.config.transport ?? 'inMemory') !== 'inMemory') {
    const transport = await createTransport(loaded, logger);
    return { loaded, logger, transport, close: () => transport.close() };
  }
  let shared = sharedInMemory.get(loaded.path);
  if (!shared) {
    shared = { transport: new InMemoryTransport(), users: 0 };
    sharedInMemory.set(loaded.path, shared);
  }
  shared.users += 1;
  const entry = shared;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    entry.users -= 1;
    if (entry.users > 0) return;
    if (sharedInMemory.get(loaded.path) === entry) sharedInMemory.delete(loaded.path);
    await entry.transport.close();
  };
  return { loaded, logger, transport: entry.transport, close };
}

function resolveFrom(directory: string, path: string): string {
  return isAbsolute(path) ? path : resolve(directory, path);
}
