import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { createLogger } from '../../src/config/from-config.js';

function capture(isTTY: boolean): { stream: PassThrough; text(): string } {
  const stream = Object.assign(new PassThrough(), { isTTY });
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

describe('logs from the config', () => {
  test('JSON lines when not in a terminal, at the configured level', () => {
    const out = capture(false);
    const logger = createLogger({ level: 'warn' }, out.stream);
    logger.info('hidden');
    logger.warn({ batchKey: 'k' }, 'shown');
    const lines = out
      .text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, msg: 'shown', batchKey: 'k', name: 'sheaf' });
  });

  test('pretty, human-readable lines in a terminal, unless pretty: false', () => {
    const tty = capture(true);
    createLogger({ level: 'info' }, tty.stream).info('ready');
    expect(tty.text()).toMatch(/INFO.*ready/);
    expect(() => JSON.parse(tty.text())).toThrow();
    const forced = capture(true);
    createLogger({ level: 'info', pretty: false }, forced.stream).info('ready');
    expect(JSON.parse(forced.text())).toMatchObject({ msg: 'ready' });
  });

  test('errors are one line (name, message, cause) unless verbose, in JSON and in a terminal', () => {
    const error = new Error('connection to pulsar://b:6650 failed', { cause: new Error('ECONNREFUSED') });
    const json = capture(false);
    createLogger({ level: 'info' }, json.stream).warn({ err: error }, 'consumer lost its connection');
    expect(JSON.parse(json.text()).err).toBe('Error: connection to pulsar://b:6650 failed (cause: ECONNREFUSED)');
    const tty = capture(true);
    createLogger({ level: 'info' }, tty.stream).warn({ err: error }, 'consumer lost its connection');
    expect(tty.text()).not.toMatch(/\n\s+at /);
    const verbose = capture(false);
    createLogger({ level: 'info' }, verbose.stream, true).warn({ err: error }, 'consumer lost its connection');
    expect(JSON.parse(verbose.text()).err.stack).toMatch(/\n\s+at /);
  });
});
