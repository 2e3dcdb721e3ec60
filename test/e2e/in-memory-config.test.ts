/**
 * The in-memory transport from a config file: one transport per file in a
 * process (a worker and a client built from the same file meet), and a clear
 * warning where nothing can serve the tasks.
 */
import { pino } from 'pino';
import { expect, test } from 'vitest';
import { writeEchoConfig } from '../support/cli.js';
import { captureLogs } from '../support/logger.js';

// The echo fixture is a shipped-style module on the built package (dist/): use the same build here,
// so its Task context and the worker's are one.
const { SheafClient, SheafWorker } = (await import(
  new URL('../../dist/index.js', import.meta.url).href
)) as typeof import('../../src/index.js');

test('a worker and a client from the same in-memory sheaf.yml share one transport', async () => {
  const config = await writeEchoConfig({ transport: 'inMemory' });
  const worker = await SheafWorker.fromConfigFile(config, { logger: pino({ level: 'silent' }) });
  await worker.start();
  const client = await SheafClient.fromConfigFile(config, { logger: pino({ level: 'silent' }) });
  try {
    const echo = client.service<{ echo(v: string): Promise<string> }>('Echo');
    expect(await echo.echo('shared')).toBe('echo shared');
  } finally {
    await client.close();
    await worker.close();
  }
});

test('a client alone on the in-memory transport says no worker here serves the service, once', async () => {
  const config = await writeEchoConfig({ transport: 'inMemory' });
  const { logger, lines } = captureLogs();
  const client = await SheafClient.fromConfigFile(config, { logger });
  try {
    const echo = client.dispatch(client.service<{ echo(v: string): Promise<string> }>('Echo'));
    await echo.echo('a');
    await echo.echo('b');
    expect(lines().match(/no worker in this process serves Echo/g)).toHaveLength(1);
    expect(lines()).toContain('use transport: pulsar to reach workers elsewhere');
  } finally {
    await client.close();
  }
});
