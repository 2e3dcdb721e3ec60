import type { Command } from 'commander';
import { configuredToken } from '../config/from-config.js';
import { loadConfigFile } from '../config/load.js';
import { ConfigError } from '../errors.js';
import { PulsarAdmin } from '../transport/pulsar/admin.js';
import { taskTopic } from '../topics.js';
import { ExitCode } from './exit-codes.js';
import { failureLine } from './failure-line.js';

export function setupCommand(program: Command): void {
  program
    .command('setup')
    .description(
      'create the Pulsar tenant and namespace of a sheaf.yml, with the policy Sheaf needs, and partitioned task topics for services with `partitions`; safe to run again',
    )
    .option('-c, --config <file>', 'the configuration file', './sheaf.yml')
    .option('--verbose', 'print stacks with errors')
    .addHelpText(
      'after',
      '\nNeeds pulsar.adminUrl (the broker admin REST API, e.g. http://localhost:8080) and, with authentication, a token allowed to create tenants and namespaces.',
    )
    .action(async (options: { config: string; verbose?: boolean }) => {
      const loaded = await loadConfigFile(options.config);
      const p = loaded.config.pulsar;
      if ((loaded.config.transport ?? 'inMemory') !== 'pulsar' || !p) {
        throw new ConfigError(
          [
            {
              path: 'transport',
              message: 'sheaf setup prepares a Pulsar namespace; this file uses the in-memory transport, which needs none',
            },
          ],
          {
            source: loaded.path,
          },
        );
      }
      if (!p.adminUrl) {
        throw new ConfigError(
          [{ path: 'pulsar.adminUrl', message: "is needed by sheaf setup: the broker's admin REST API, e.g. http://localhost:8080" }],
          {
            source: loaded.path,
          },
        );
      }
      const token = configuredToken(loaded);
      const tenant = p.tenant ?? 'public';
      const namespace = p.namespace ?? 'default';
      try {
        const admin = new PulsarAdmin({
          adminUrl: p.adminUrl,
          ...(token !== undefined ? { token } : {}),
          onRetry: (error, attempt, delayMs) =>
            process.stderr.write(`sheaf: setup: ${error.message}; trying again in ${delayMs} ms (retry ${attempt})\n`),
        });
        const report = await admin.ensureNamespace(tenant, namespace);
        process.stdout.write(`tenant ${tenant}: ${report.tenant}\nnamespace ${tenant}/${namespace}: ${report.namespace}\n`);
        for (const policy of report.policies) process.stdout.write(`policy: ${policy}\n`);
        for (const service of loaded.config.services ?? []) {
          if (service.partitions === undefined) continue;
          const topic = taskTopic(service.name);
          process.stdout.write(`topic ${topic}: ${await admin.ensurePartitions(tenant, namespace, topic, service.partitions)}\n`);
        }
      } catch (error) {
        process.stderr.write(`sheaf: setup failed: ${failureLine(error, options.verbose ?? false)}\n`);
        process.exitCode = ExitCode.failure;
      }
    });
}
