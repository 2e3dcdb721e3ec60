/**
 * Vitest global setup: compiles `dist/` once, for the tests that run the
 * `sheaf` command as a process and load service modules the way users do.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export default async function setup(): Promise<void> {
  await promisify(execFile)('npm', ['run', '--silent', 'build'], { cwd: new URL('../..', import.meta.url).pathname });
}
