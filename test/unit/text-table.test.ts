import { describe, expect, test } from 'vitest';
import { printable, table } from '../../src/util/text-table.js';

describe('CLI tables', () => {
  test('control characters from messages are shown escaped, never sent to the terminal raw', () => {
    const hostile = 'ok\u001b]0;pwned\u0007\u001b[2J\rhidden\nnext\u202eevil';
    const out = table([
      ['task', 'last error'],
      [hostile, 'E: \u009b31m'],
    ]);
    // eslint-disable-next-line no-control-regex
    expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    expect(out).toContain('ok\\x1b]0;pwned\\x07\\x1b[2J\\rhidden\\nnext\\u202eevil');
    expect(out.split('\n')).toHaveLength(3);
  });

  test('printable leaves ordinary text alone', () => {
    expect(printable('task-1 · ünïcode ✓')).toBe('task-1 · ünïcode ✓');
  });
});
