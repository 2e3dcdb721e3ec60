import cliProgress from 'cli-progress';

/** A progress bar on stderr (so stdout stays data); plain periodic lines when stderr is not a terminal. */
export function progressBar(label: string, total: number): { tick(n?: number): void; stop(): void } {
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} {bar} {value}/{total} | {duration_formatted}`,
      stream: process.stderr,
      noTTYOutput: true,
      notTTYSchedule: 2000,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return { tick: (n = 1) => bar.increment(n), stop: () => bar.stop() };
}
