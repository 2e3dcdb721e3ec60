/**
 * `@Batch` and `@Params` only record metadata on the class (reflect-metadata);
 * nothing is checked or wrapped here. The registry (`registry.ts`) reads the
 * metadata when a worker starts and rejects declarations that cannot work.
 */
import 'reflect-metadata';

/** A class constructor, as named in `input` or `@Params`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Class<T = unknown> = new (...args: any[]) => T;

export interface BatchOptions {
  /**
   * A class each task's input is built as. For a task method with one
   * parameter, the argument is converted with class-transformer
   * (`plainToInstance`); for several parameters, the class is constructed with
   * the task's arguments in order (`new input(...args)`).
   */
  readonly input?: Class;
}

export interface BatchDeclaration {
  readonly batchMethod: string;
  readonly taskMethod: string;
  readonly options: BatchOptions;
}

const BATCH_KEY = Symbol.for('sheaf:batch');
const PARAMS_KEY = Symbol.for('sheaf:params');

/**
 * Marks a method as the batch variant of the task method `taskMethod`. It
 * receives `Map<taskId, input>` and returns `Map<taskId, result | Error>` (or
 * nothing, which gives every task the result `null`).
 */
export function Batch(taskMethod: string, options: BatchOptions = {}): MethodDecorator {
  return (target, propertyKey) => {
    const existing = (Reflect.getOwnMetadata(BATCH_KEY, target) as BatchDeclaration[] | undefined) ?? [];
    const declaration: BatchDeclaration = { batchMethod: String(propertyKey), taskMethod, options };
    Reflect.defineMetadata(BATCH_KEY, [...existing, declaration], target);
  };
}

/**
 * Declares a task method's parameter types, so the worker can check a task's
 * arguments and rebuild class instances with class-transformer. With no
 * arguments it uses the types TypeScript emits (`emitDecoratorMetadata`).
 * Types are constructors: `String`, `Number`, `Boolean`, `Array`, `Object`,
 * `Date`, or a class.
 */
export function Params(...types: Class[]): MethodDecorator {
  return (target, propertyKey) => {
    const declared = types.length > 0 ? types : (Reflect.getMetadata('design:paramtypes', target, propertyKey) as Class[] | undefined);
    if (!declared) {
      throw new TypeError(
        `@Params() on ${target.constructor.name}.${String(propertyKey)} found no emitted parameter types: ` +
          'enable "emitDecoratorMetadata" in tsconfig.json, or list the types: @Params(String, Address)',
      );
    }
    Reflect.defineMetadata(PARAMS_KEY, declared, target, propertyKey);
  };
}

/** Every `@Batch` declaration of a class and its ancestors (the subclass's first). */
export function batchDeclarations(prototype: object): BatchDeclaration[] {
  const out: BatchDeclaration[] = [];
  for (let p: object | null = prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    const own = Reflect.getOwnMetadata(BATCH_KEY, p) as BatchDeclaration[] | undefined;
    if (own) out.push(...own);
  }
  return out;
}

export function declaredParams(prototype: object, method: string): Class[] | undefined {
  return Reflect.getMetadata(PARAMS_KEY, prototype, method) as Class[] | undefined;
}
