/**
 * Resolves a service implementation into its task methods and their batch
 * variants, once, at worker start. Every declaration that cannot work is
 * rejected here with the class and method named, so that a mistake fails the
 * deployment instead of dead-lettering tasks later.
 */
import { ServiceDefinitionError } from '../errors.js';
import { argumentPreparer, batchInputBuilder, type ArgumentPreparer } from './arguments.js';
import { batchDeclarations, declaredParams } from './decorators.js';

export interface BatchVariant {
  /** The `@Batch` method's name. */
  readonly methodName: string;
  /** Builds one task's entry of the input map from its prepared arguments. */
  readonly buildInput: (args: unknown[]) => unknown;
}

export interface MethodDefinition {
  readonly name: string;
  /** Declared parameter count (`@Params`, else `Function.length`). */
  readonly arity: number;
  readonly prepareArgs: ArgumentPreparer;
  /** The batch variant, or null when tasks of this method run one at a time. */
  readonly batch: BatchVariant | null;
}

export interface ServiceDefinition {
  readonly serviceName: string;
  readonly className: string;
  readonly methods: ReadonlyMap<string, MethodDefinition>;
}

/** Reads a service instance's methods and `@Batch` declarations; throws `ServiceDefinitionError`. */
export function resolveService(serviceName: string, instance: object): ServiceDefinition {
  const prototype = Object.getPrototypeOf(instance) as object;
  const className = prototype.constructor?.name || 'AnonymousService';
  const functions = methodNames(prototype);
  const declarations = batchDeclarations(prototype);

  const batchOf = new Map<string, BatchVariant>();
  const batchMethodNames = new Set<string>();
  for (const d of declarations) {
    const fn = (prototype as Record<string, unknown>)[d.batchMethod];
    if (typeof fn !== 'function') {
      throw new ServiceDefinitionError(className, d.batchMethod, '@Batch is on something that is not a method');
    }
    if (!functions.has(d.taskMethod) || declarations.some((o) => o.batchMethod === d.taskMethod)) {
      const known = [...functions].filter((n) => !declarations.some((o) => o.batchMethod === n));
      throw new ServiceDefinitionError(
        className,
        d.batchMethod,
        `@Batch('${d.taskMethod}') names a task method that does not exist on ${className}; ` +
          `declare the task method too, or name one of: ${known.join(', ') || '(none)'}`,
      );
    }
    const other = batchOf.get(d.taskMethod);
    if (other) {
      throw new ServiceDefinitionError(
        className,
        d.batchMethod,
        `task method '${d.taskMethod}' already has a batch method (${other.methodName}); keep one @Batch per task method`,
      );
    }
    if (fn.length !== 1) {
      throw new ServiceDefinitionError(
        className,
        d.batchMethod,
        `a batch method takes exactly one parameter (Map<taskId, input>), this one declares ${fn.length}`,
      );
    }
    if (d.options.input !== undefined && typeof d.options.input !== 'function') {
      throw new ServiceDefinitionError(className, d.batchMethod, '@Batch option "input" must be a class');
    }
    const taskFn = (prototype as Record<string, (...a: unknown[]) => unknown>)[d.taskMethod]!;
    const arity = declaredParams(prototype, d.taskMethod)?.length ?? taskFn.length;
    batchOf.set(d.taskMethod, { methodName: d.batchMethod, buildInput: batchInputBuilder(arity, d.options.input) });
    batchMethodNames.add(d.batchMethod);
  }

  const methods = new Map<string, MethodDefinition>();
  for (const name of functions) {
    if (batchMethodNames.has(name)) continue; // batch methods are not task methods of their own
    const fn = (prototype as Record<string, (...a: unknown[]) => unknown>)[name]!;
    const params = declaredParams(prototype, name);
    methods.set(name, {
      name,
      arity: params?.length ?? fn.length,
      prepareArgs: argumentPreparer(`${serviceName}.${name}`, params),
      batch: batchOf.get(name) ?? null,
    });
  }
  return { serviceName, className, methods };
}

/** Methods on the prototype chain, up to (not including) Object.prototype. */
function methodNames(prototype: object): Set<string> {
  const names = new Set<string>();
  for (let p: object | null = prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    for (const name of Object.getOwnPropertyNames(p)) {
      if (name === 'constructor') continue;
      const descriptor = Object.getOwnPropertyDescriptor(p, name);
      if (descriptor && typeof descriptor.value === 'function') names.add(name);
    }
  }
  return names;
}
