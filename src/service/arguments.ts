/**
 * Checks a task's arguments against its method's declared parameters and
 * rebuilds class instances with class-transformer. Without `@Params` there is
 * nothing declared to check against (JavaScript functions do not say which
 * parameters are optional), so only the shape (an array) is checked.
 */
import { plainToInstance } from 'class-transformer';
import { WrongArgumentsError } from '../errors.js';
import { isPlainObject } from '../util/json.js';
import type { Class } from './decorators.js';

export type ArgumentPreparer = (args: unknown[]) => unknown[];

export function argumentPreparer(label: string, params: readonly Class[] | undefined): ArgumentPreparer {
  if (!params) return (args) => args;
  const convert = params.map((type, index) => parameterConverter(label, index, type));
  return (args) => {
    if (args.length > params.length) {
      throw new WrongArgumentsError(`${label} takes ${params.length} argument${params.length === 1 ? '' : 's'}, got ${args.length}`);
    }
    return args.map((arg, index) => convert[index]!(arg));
  };
}

function parameterConverter(label: string, index: number, type: Class): (arg: unknown) => unknown {
  const wrong = (expected: string, arg: unknown): WrongArgumentsError =>
    new WrongArgumentsError(`${label} argument ${index} must be ${expected}, got ${describe(arg)}`);
  // null and undefined (JSON null) pass for every type: optional parameters are not declared.
  const primitive = (expected: string, test: (arg: unknown) => boolean) => (arg: unknown) => {
    if (arg === null || arg === undefined || test(arg)) return arg;
    throw wrong(expected, arg);
  };
  switch (type) {
    case String:
      return primitive('a string', (a) => typeof a === 'string');
    case Number:
      return primitive('a number', (a) => typeof a === 'number');
    case Boolean:
      return primitive('a boolean', (a) => typeof a === 'boolean');
    case Array:
      return primitive('an array', (a) => Array.isArray(a));
    case Object:
      return (arg) => arg;
    case Date:
      return (arg) => {
        if (arg === null || arg === undefined) return arg;
        if (typeof arg !== 'string' && typeof arg !== 'number') throw wrong('a date (ISO string or epoch ms)', arg);
        const date = new Date(arg);
        if (Number.isNaN(date.getTime())) throw wrong('a valid date', arg);
        return date;
      };
    default:
      return (arg) => {
        if (arg === null || arg === undefined) return arg;
        if (!isPlainObject(arg)) throw wrong(`an object (for class ${type.name})`, arg);
        return plainToInstance(type, arg);
      };
  }
}

/** Builds one task's batch input from its (prepared) arguments. */
export function batchInputBuilder(arity: number, input: Class | undefined): (args: unknown[]) => unknown {
  if (arity === 1) {
    if (!input) return (args) => args[0];
    return (args) => (isPlainObject(args[0]) ? plainToInstance(input, args[0]) : args[0]);
  }
  if (!input) return (args) => args;
  return (args) => new input(...args);
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}
