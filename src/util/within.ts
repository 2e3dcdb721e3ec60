/**
 * Whether `work` settled within `ms` milliseconds (Infinity: waits for it).
 * The work goes on either way; a rejection counts as settled and is not
 * rethrown here (await the work itself for that). For shutdowns that must not
 * wait on a broker that is gone or a batch that hangs.
 */
export async function within(work: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = work.then(
    () => true,
    () => true,
  );
  if (ms === Infinity) return settled;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const inTime = await Promise.race([settled, new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  clearTimeout(timer);
  return inTime;
}
