import { pino } from 'pino';

/** Tests keep logs quiet unless SHEAF_TEST_LOG names a level. */
export const testLogger = pino({ level: process.env.SHEAF_TEST_LOG ?? 'silent' });
