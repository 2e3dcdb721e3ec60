import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

/** Tests keep logs quiet unless SHEAF_TEST_LOG names a level. */
export const testLogger = pino({ level: process.env.SHEAF_TEST_LOG ?? 'silent' });

/** A logger at `warn` whose lines are kept, for tests that assert what a worker or client says. */
export function captureLogs(): { logger: Logger; lines: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  return { logger: pino({ level: 'warn' }, stream), lines: () => text };
}
