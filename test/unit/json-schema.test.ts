/**
 * The shipped JSON Schema, as an editor uses it: every property explained,
 * and every example YAML in the repository valid against it as written
 * (`${VAR}` strings included).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { describe, expect, test } from 'vitest';

const root = new URL('../../', import.meta.url).pathname;
const schema = JSON.parse(readFileSync(`${root}config/sheaf.schema.json`, 'utf8')) as Record<string, unknown>;
const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);

/** Every sheaf.yml example: config/*.yml, and the ```yaml blocks of README and docs that hold a services list. */
function examples(): Array<[string, string]> {
  const out: Array<[string, string]> = readdirSync(`${root}config`)
    .filter((f) => f.endsWith('.yml'))
    .map((f) => [`config/${f}`, readFileSync(`${root}config/${f}`, 'utf8')]);
  const docs = ['README.md', ...readdirSync(`${root}docs`).map((f) => `docs/${f}`)].filter((f) => f.endsWith('.md'));
  for (const file of docs) {
    const text = readFileSync(`${root}${file}`, 'utf8');
    for (const [i, match] of [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].entries()) {
      if (/^(services|pulsar|transport):/m.test(match[1]!)) out.push([`${file} (yaml block ${i + 1})`, match[1]!]);
    }
  }
  return out;
}

describe('config/sheaf.schema.json', () => {
  test('every property has a description', () => {
    const missing: string[] = [];
    const walk = (node: Record<string, unknown>, path: string): void => {
      for (const [key, child] of Object.entries((node.properties ?? {}) as Record<string, Record<string, unknown>>)) {
        const at = path ? `${path}.${key}` : key;
        if (typeof child.description !== 'string') missing.push(at);
        walk(child, at);
        if (child.items) walk(child.items as Record<string, unknown>, `${at}[]`);
      }
    };
    walk(schema, '');
    expect(missing).toEqual([]);
  });

  test.each(examples())('%s is valid as written', (_name, text) => {
    const valid = validate(parse(text));
    expect(validate.errors ?? [], JSON.stringify(validate.errors)).toEqual([]);
    expect(valid).toBe(true);
  });

  test('a ${VAR} string is accepted where a number or an enum goes; a wrong value is not', () => {
    const base = { transport: '${SHEAF_TRANSPORT:-pulsar}', services: [{ name: 'S', executor: { module: 'm.js', export: 'S' } }] };
    expect(
      validate({ ...base, services: [{ name: 'S', executor: { module: 'm.js', export: 'S', concurrency: '${CONCURRENCY:-4}' } }] }),
    ).toBe(true);
    expect(validate({ ...base, services: [{ name: 'S', executor: { module: 'm.js', export: 'S', concurrency: 'four' } }] })).toBe(false);
    expect(validate({ ...base, transport: 'kafka' })).toBe(false);
  });
});
