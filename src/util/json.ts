import { instanceToPlain } from 'class-transformer';

/**
 * Turns a value into what goes on the wire. Class instances go through
 * class-transformer so that `@Exclude`, `@Expose` and `@Transform` apply; plain
 * data is left as it is (the common case, kept off the slower path).
 */
export function toPlain(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map(toPlain);
  const proto = Object.getPrototypeOf(value) as object | null;
  if (proto === Object.prototype || proto === null) return value;
  return instanceToPlain(value);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as object | null;
  return proto === Object.prototype || proto === null;
}
