/**
 * Runs in every test file: after the file's own hooks (registered first, so
 * it runs last), deletes the namespaces its tests created on the broker, so
 * nothing of a test run stays there.
 */
import { afterAll } from 'vitest';
import { deleteCreatedNamespaces, noPulsar } from '../support/pulsar.js';

afterAll(async () => {
  if (!noPulsar()) await deleteCreatedNamespaces();
}, 120_000);
