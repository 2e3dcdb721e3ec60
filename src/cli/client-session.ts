/**
 * What `sheaf dispatch` and `sheaf job run` share: the file's transport, a
 * client on it, and, with `transport: inMemory`, the file's services running
 * in this process (nothing outside it can see an in-memory transport).
 * Everything is closed when `use` ends, however it ends.
 */
import { SheafClient } from '../client/client.js';
import { loadServices, setupFromConfigFile } from '../config/from-config.js';
import { SheafWorker } from '../worker/worker.js';

/** Runs `use` with a client for the file at `config`; resolves with what `use` resolves with. */
export async function withClientSession<T>(config: string, use: (client: SheafClient, embedded: boolean) => Promise<T>): Promise<T> {
  // Logs go to stderr: stdout carries the command's data.
  const setup = await setupFromConfigFile(config, { logStream: process.stderr });
  const embedded = setup.transport.kind === 'inMemory';
  let worker: SheafWorker | undefined;
  let client: SheafClient | undefined;
  try {
    if (embedded) {
      worker = new SheafWorker({ transport: setup.transport, services: await loadServices(setup.loaded), logger: setup.logger });
      await worker.start();
    }
    client = await SheafClient.connect({ transport: setup.transport, logger: setup.logger });
    return await use(client, embedded);
  } finally {
    await worker?.close();
    await client?.close();
    await setup.close();
  }
}
