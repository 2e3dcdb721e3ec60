/** What the `sheaf` command's exit status means. */
export const ExitCode = {
  /** Done; for `worker`, drained and closed after a signal. */
  ok: 0,
  /** A task failed (`dispatch --wait`), or the worker failed while running. */
  failure: 1,
  /** Bad arguments or configuration: nothing was done. */
  usage: 2,
  /** A second signal forced the worker to stop without draining. */
  interrupted: 130,
} as const;
