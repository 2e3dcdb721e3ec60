import { cpus, totalmem, release, platform } from 'node:os';

/** What the figures were measured on: they mean little without it. */
export function describeMachine(pulsarVersion: string): Record<string, string> {
  const cpu = cpus();
  return {
    cpu: `${cpu.length} × ${cpu[0]?.model ?? 'unknown'}`,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    os: `${platform()} ${release()}`,
    node: process.version,
    pulsar: `${pulsarVersion} standalone, same machine (1 GiB heap, 2 GC threads)`,
  };
}
