/**
 * A plain text table: the first column left-aligned, the others (numbers)
 * right-aligned. Cells are made printable first: they may hold what arrived
 * in messages (task ids, error messages), and control characters (escape
 * sequences that move the cursor, recolour or retitle the terminal, a
 * carriage return that hides text) must not reach the terminal raw.
 */
export function table(rows: string[][]): string {
  const printed = rows.map((row) => row.map(printable));
  const widths = printed[0]!.map((_, c) => Math.max(...printed.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(printed[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...printed.slice(1).map(line)].join('\n');
}

// C0 and C1 control characters, DEL, and the bidirectional overrides that reorder what a terminal shows.
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every control character written as an escape (`\n`, `\x1b`, `\u202e`), visible and inert. */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
