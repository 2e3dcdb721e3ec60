/**
 * Reading `sheaf.yml`: YAML parsing, environment values, validation,
 * and the cross-checks that span keys. Every problem found is reported at
 * once, each with its path (or line) and what to do.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isMap, parseDocument, Scalar, visit, type Document } from 'yaml';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { compileExecutorSettings, type CompiledExecutorSettings } from './executor-schema.js';
import { toConfigIssues } from './issues.js';
import { sheafConfigSchema, type SheafConfig } from './schema.js';

export interface LoadedConfig {
  readonly path: string;
  /** The folder module paths and files are resolved from. */
  readonly directory: string;
  readonly config: SheafConfig;
  /** Compiled executor settings, by service name (services that have an executor). */
  readonly executors: ReadonlyMap<string, CompiledExecutorSettings & { module: string; export: string }>;
}

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const PLACEHOLDER = /__sheaf_env_(\d+)__/g;
const WHOLE_PLACEHOLDER = /^__sheaf_env_(\d+)__$/;
const NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?$/;

interface Reference {
  readonly whole: string;
  readonly variable: string;
  readonly fallback: string | undefined;
  readonly line: number;
}

/**
 * Reads `${VAR}` and `${VAR:-default}` from the environment into the values
 * of the file, after it is parsed: each reference is first replaced by a
 * placeholder, the YAML is parsed, and the values go into the parsed strings.
 * So an environment value is only ever a value: a newline or `key: value` in
 * it stays part of one string and can never add keys. A value that is a
 * reference alone, unquoted, becomes a number or a boolean when it reads as
 * one (`concurrency: ${CONC}`). A variable that is unset (or empty, for the
 * `:-` form) with no default is an issue naming its line; references in
 * comments are ignored.
 */
export function parseWithEnvironment(text: string, env: NodeJS.ProcessEnv, issues: ConfigIssue[]): Document.Parsed {
  const references: Reference[] = [];
  const marked = text
    .split('\n')
    .map((line, index) => {
      if (line.trimStart().startsWith('#')) return line;
      return line.replace(VARIABLE, (whole, variable: string, fallback: string | undefined) => {
        references.push({ whole, variable, fallback, line: index + 1 });
        return `__sheaf_env_${references.length - 1}__`;
      });
    })
    .join('\n');
  const document = parseDocument(marked);
  if (references.length === 0) return document;
  const valueOf = (index: string): string => {
    const ref = references[Number(index)];
    if (!ref) return '';
    const value = env[ref.variable];
    if (value !== undefined && (value !== '' || ref.fallback === undefined)) return value;
    if (ref.fallback !== undefined) return ref.fallback;
    issues.push({
      path: `line ${ref.line}`,
      message: `${ref.whole} is not set; set ${ref.variable} in the environment, or give a default: \${${ref.variable}:-value}`,
    });
    return '';
  };
  visit(document, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('__sheaf_env_')) return;
      const alone = node.type === Scalar.PLAIN ? WHOLE_PLACEHOLDER.exec(node.value) : null;
      const value = node.value.replace(PLACEHOLDER, (_whole, index: string) => valueOf(index));
      node.value = alone ? typed(value) : value;
    },
  });
  return document;
}

/** An unquoted value read from the environment: a number or a boolean when it reads as one, else the string. */
function typed(value: string): string | number | boolean {
  if (NUMBER.test(value)) return Number(value);
  if (value === 'true' || value === 'false') return value === 'true';
  return value;
}

export async function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadedConfig> {
  const absolute = resolve(path);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (cause) {
    throw new ConfigError([{ path: '', message: `cannot read ${absolute}: ${(cause as Error).message}` }], { source: absolute, cause });
  }
  return parseConfigText(text, absolute, env);
}

export function parseConfigText(text: string, absolutePath: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const issues: ConfigIssue[] = [];
  const document = parseWithEnvironment(text, env, issues);
  for (const error of document.errors) {
    const line = error.linePos?.[0]?.line;
    issues.push({ path: line ? `line ${line}` : '', message: `YAML: ${error.message.split('\n')[0]}` });
  }
  if (issues.length > 0) throw new ConfigError(issues, { source: absolutePath });
  if (document.contents !== null && !isMap(document.contents)) {
    throw new ConfigError([{ path: '', message: 'the file must hold a mapping (name:, transport:, services:, ...)' }], {
      source: absolutePath,
    });
  }
  const parsed = sheafConfigSchema.safeParse(document.toJS() ?? {}, { reportInput: true });
  if (!parsed.success) throw new ConfigError(toConfigIssues(parsed.error), { source: absolutePath });
  const config = parsed.data;

  if ((config.transport ?? 'inMemory') === 'pulsar' && !config.pulsar) {
    issues.push({ path: 'pulsar', message: 'is required with transport: pulsar (at least pulsar.brokerServiceUrl)' });
  }
  const auth = config.pulsar?.authentication;
  if (auth?.token !== undefined && auth.tokenFile !== undefined) {
    issues.push({
      path: 'pulsar.authentication',
      message: 'has both token and tokenFile; keep one (tokenFile is re-read at every reconnection)',
    });
  }
  if (config.pulsar?.tls && !config.pulsar.brokerServiceUrl.startsWith('pulsar+ssl://')) {
    // A tls block on a plaintext URL would be ignored, and a token would travel unencrypted.
    issues.push({
      path: 'pulsar.tls',
      message: `needs a pulsar+ssl:// brokerServiceUrl (got ${config.pulsar.brokerServiceUrl.split('://')[0]}://...); use pulsar+ssl://host:6651, or remove tls`,
    });
  }
  const executors = new Map<string, CompiledExecutorSettings & { module: string; export: string }>();
  const seen = new Map<string, number>();
  (config.services ?? []).forEach((service, index) => {
    const first = seen.get(service.name);
    if (first !== undefined) {
      issues.push({
        path: `services[${index}].name`,
        message: `duplicates services[${first}].name '${service.name}'; each service is declared once`,
      });
      return;
    }
    seen.set(service.name, index);
    if (!service.executor) return;
    const { module, export: exportName, ...settings } = service.executor;
    executors.set(service.name, {
      module,
      export: exportName,
      ...compileExecutorSettings(settings, `services[${index}].executor`, issues),
    });
  });
  if (issues.length > 0) throw new ConfigError(issues, { source: absolutePath });
  return { path: absolutePath, directory: dirname(absolutePath), config, executors };
}
