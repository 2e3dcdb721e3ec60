/**
 * Reading `sheaf.yml`: environment interpolation, YAML parsing, validation,
 * and the cross-checks that span keys. Every problem found is reported at
 * once, each with its path (or line) and what to do.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isMap, parseDocument } from 'yaml';
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

/**
 * Replaces `${VAR}` and `${VAR:-default}` in the raw text, so numbers and
 * booleans can come from the environment too. A variable that is unset (or
 * empty, for the `:-` form) with no default is an issue naming its line.
 */
export function interpolate(text: string, env: NodeJS.ProcessEnv, issues: ConfigIssue[]): string {
  return text
    .split('\n')
    .map((line, index) => {
      if (line.trimStart().startsWith('#')) return line;
      return line.replace(VARIABLE, (whole, variable: string, fallback: string | undefined) => {
        const value = env[variable];
        if (value !== undefined && (value !== '' || fallback === undefined)) return value;
        if (fallback !== undefined) return fallback;
        issues.push({
          path: `line ${index + 1}`,
          message: `${whole} is not set; set ${variable} in the environment, or give a default: \${${variable}:-value}`,
        });
        return '';
      });
    })
    .join('\n');
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
  const interpolated = interpolate(text, env, issues);
  const document = parseDocument(interpolated);
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
