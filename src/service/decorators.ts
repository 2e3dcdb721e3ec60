/**
 * `@Batch` and `@Params` only record metadata on the class (reflect-metadata);
 * nothing is checked or wrapped here. The registry (`registry.ts`) reads the
 * metadata when a worker starts and rejects declarations that cannot work.
 *
 * Both decorator forms work, with the same result:
 * - legacy (`experimentalDecorators: true`): called with the prototype, the
 *   method's name and its descriptor; the metadata goes on the prototype at
 *   once;
 * - standard (TC39, TypeScript 5+ without the flag, and what tsx or esbuild
 *   emit then): called with the method and a context. The class is not known
 *   yet, so an initializer records the metadata on the declaring prototype
 *   when the first instance is built, before any worker reads it (a worker
 *   always builds its instance first).
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

/**
 * What a batch method must look like: one `Map<taskId, input>` in, a
 * `Map<taskId, result | Error>` (or nothing) out. `@Batch` checks it at
 * compile time in both decorator forms.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type BatchMethod = (tasks: Map<string, any>) => Promise<Map<string, unknown> | void> | Map<string, unknown> | void;

/** A method decorator usable in both forms; `M` constrains the decorated method's type. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface MethodDecoratorOfEitherForm<M extends (...args: any[]) => any> {
  /** Legacy (`experimentalDecorators`) form. */
  <T extends M>(target: object, propertyKey: string | symbol, descriptor: TypedPropertyDescriptor<T>): void;
  /** Standard (TC39) form. */
  <T extends M>(value: T, context: ClassMethodDecoratorContext<unknown, T>): void;
}

const BATCH_KEY = Symbol.for('sheaf:batch');
const PARAMS_KEY = Symbol.for('sheaf:params');

/**
 * Marks a method as the batch variant of the task method `taskMethod`. It
 * receives `Map<taskId, input>` and returns `Map<taskId, result | Error>` (or
 * nothing, which gives every task the result `null`).
 */
export function Batch(taskMethod: string, options: BatchOptions = {}): MethodDecoratorOfEitherForm<BatchMethod> {
  const record = (prototype: object, batchMethod: string): void => {
    const existing = (Reflect.getOwnMetadata(BATCH_KEY, prototype) as BatchDeclaration[] | undefined) ?? [];
    if (existing.some((d) => d.batchMethod === batchMethod)) return; // a standard initializer runs per instance
    Reflect.defineMetadata(BATCH_KEY, [...existing, { batchMethod, taskMethod, options }], prototype);
  };
  return eitherForm('@Batch', record) as MethodDecoratorOfEitherForm<BatchMethod>;
}

/**
 * Declares a task method's parameter types, so the worker can check a task's
 * arguments and rebuild class instances with class-transformer. With no
 * arguments it uses the types TypeScript emits (`emitDecoratorMetadata`, which
 * only legacy decorators have). Types are constructors: `String`, `Number`,
 * `Boolean`, `Array`, `Object`, `Date`, or a class.
 */
export function Params(...types: Class[]): MethodDecoratorOfEitherForm<(...args: any[]) => unknown> {
  return ((...args: unknown[]) => {
    if (isStandard(args) && types.length === 0) {
      const name = String(args[1].name);
      throw new TypeError(
        `@Params() on ${name} has no types to read: parameter types are emitted only for legacy decorators ` +
          '("experimentalDecorators" and "emitDecoratorMetadata" in tsconfig.json); list the types instead: @Params(String, Address)',
      );
    }
    const record = (prototype: object, method: string): void => {
      const declared = types.length > 0 ? types : (Reflect.getMetadata('design:paramtypes', prototype, method) as Class[] | undefined);
      if (!declared) {
        throw new TypeError(
          `@Params() on ${prototype.constructor.name}.${method} found no emitted parameter types: ` +
            'they come only from tsc with "emitDecoratorMetadata" and "experimentalDecorators" (tsx and esbuild never emit them); ' +
            'list the types instead: @Params(String, Address)',
        );
      }
      Reflect.defineMetadata(PARAMS_KEY, declared, prototype, method);
    };
    return (eitherForm('@Params', record) as (...a: unknown[]) => void)(...args);
  }) as MethodDecoratorOfEitherForm<(...args: any[]) => unknown>;
}

type StandardArgs = [(...args: never[]) => unknown, ClassMethodDecoratorContext];

function isStandard(args: unknown[]): args is StandardArgs {
  const context = args[1];
  return typeof args[0] === 'function' && typeof context === 'object' && context !== null && 'kind' in context;
}

/** A decorator that calls `record(prototype, methodName)` in whichever form it is applied. */
function eitherForm(name: string, record: (prototype: object, method: string) => void): (...args: unknown[]) => void {
  return (...args: unknown[]) => {
    if (isStandard(args)) {
      const [method, context] = args;
      if (context.kind !== 'method' || context.static || context.private || typeof context.name !== 'string') {
        throw new TypeError(`${name} goes on a public instance method; ${String(context.name)} is a ${describe(context)}`);
      }
      const methodName = context.name;
      context.addInitializer(function (this: unknown) {
        record(declaringPrototype(this as object, methodName, method), methodName);
      });
      return;
    }
    const [target, propertyKey] = args as [object, string | symbol];
    if (typeof target === 'function') throw new TypeError(`${name} goes on an instance method, not the static ${String(propertyKey)}`);
    record(target, String(propertyKey));
  };
}

/** The prototype on the instance's chain that declares `method` itself (a subclass may inherit it). */
function declaringPrototype(instance: object, name: string, method: unknown): object {
  for (
    let p = Object.getPrototypeOf(instance) as object | null;
    p && p !== Object.prototype;
    p = Object.getPrototypeOf(p) as object | null
  ) {
    if (Object.getOwnPropertyDescriptor(p, name)?.value === method) return p;
  }
  return Object.getPrototypeOf(instance) as object;
}

function describe(context: { kind: string; static?: boolean; private?: boolean }): string {
  return `${context.static ? 'static ' : ''}${context.private ? 'private ' : ''}${context.kind}`;
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
