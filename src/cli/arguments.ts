import { InvalidArgumentError } from 'commander';

/** Commander parsers for numeric options; the message names what was given. */
export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`must be a positive integer (got ${value})`);
  return n;
}

/** A parser for an integer option from 1 to `max`: commander names the option in its error. */
export function intUpTo(max: number): (value: string) => number {
  return (value) => {
    const n = positiveInt(value);
    if (n > max) throw new InvalidArgumentError(`must be at most ${max} (got ${value})`);
    return n;
  };
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (!(n > 0)) throw new InvalidArgumentError(`must be a positive number (got ${value})`);
  return n;
}
