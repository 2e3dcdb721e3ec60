import 'reflect-metadata';
import { describe, expect, test } from 'vitest';
import { Batch, Params } from '../../src/service/decorators.js';
import { resolveService } from '../../src/service/registry.js';
import { ServiceDefinitionError, WrongArgumentsError } from '../../src/errors.js';

class Address {
  street = '';
  city = '';
  label(): string {
    return `${this.street}, ${this.city}`;
  }
}

class SendArgs {
  constructor(
    readonly to: string,
    readonly subject: string,
  ) {}
}

class Good {
  send(_to: string, _subject: string): string {
    return 'single';
  }
  @Batch('send')
  sendMany(_tasks: Map<string, [string, string]>): void {}

  @Params(Address)
  ship(_address: Address): string {
    return 'single';
  }
  @Batch('ship')
  shipMany(_tasks: Map<string, Address>): void {}

  notify(_to: string, _subject: string): void {}
  @Batch('notify', { input: SendArgs })
  notifyMany(_tasks: Map<string, SendArgs>): void {}

  ping(): string {
    return 'pong';
  }
}

describe('resolveService', () => {
  test('resolves task methods and their batch variants; batch methods are not task methods', () => {
    const def = resolveService('Good', new Good());
    expect([...def.methods.keys()].sort()).toEqual(['notify', 'ping', 'send', 'ship']);
    expect(def.methods.get('send')!.batch!.methodName).toBe('sendMany');
    expect(def.methods.get('ping')!.batch).toBeNull();
    expect(def.className).toBe('Good');
  });

  test('a multi-parameter task arrives as its tuple, or as `new input(...args)`', () => {
    const def = resolveService('Good', new Good());
    expect(def.methods.get('send')!.batch!.buildInput(['a@b.c', 'hi'])).toEqual(['a@b.c', 'hi']);
    const built = def.methods.get('notify')!.batch!.buildInput(['a@b.c', 'hi']);
    expect(built).toBeInstanceOf(SendArgs);
    expect(built).toMatchObject({ to: 'a@b.c', subject: 'hi' });
  });

  test('a one-parameter task arrives as that argument, rebuilt as its declared class', () => {
    const def = resolveService('Good', new Good());
    const ship = def.methods.get('ship')!;
    const args = ship.prepareArgs([{ street: '1 Main St', city: 'Springfield' }]);
    const input = ship.batch!.buildInput(args);
    expect(input).toBeInstanceOf(Address);
    expect((input as Address).label()).toBe('1 Main St, Springfield');
  });

  test('@Params rejects wrong types and too many arguments, naming the method and the argument', () => {
    const ship = resolveService('Good', new Good()).methods.get('ship')!;
    expect(() => ship.prepareArgs(['not an object'])).toThrow(WrongArgumentsError);
    expect(() => ship.prepareArgs(['x'])).toThrow(/Good\.ship argument 0 must be an object \(for class Address\)/);
    expect(() => ship.prepareArgs([{}, {}])).toThrow(/Good\.ship takes 1 argument, got 2/);
  });

  test('@Params() without types reads the types TypeScript emitted', () => {
    class Typed {
      @Params()
      take(_n: number, _s: string, _when: Date): void {}
    }
    const take = resolveService('Typed', new Typed()).methods.get('take')!;
    const [n, s, when] = take.prepareArgs([1, 'x', '2026-01-02T03:04:05Z']);
    expect([n, s]).toEqual([1, 'x']);
    expect(when).toBeInstanceOf(Date);
    expect(() => take.prepareArgs(['1', 'x', null])).toThrow(/argument 0 must be a number, got string "1"/);
  });

  test('rejects a batch method for a task method that does not exist', () => {
    class Missing {
      @Batch('sned')
      sendMany(_tasks: Map<string, unknown>): void {}
      send(): void {}
    }
    expect(() => resolveService('Missing', new Missing())).toThrow(ServiceDefinitionError);
    expect(() => resolveService('Missing', new Missing())).toThrow(
      /Missing\.sendMany: @Batch\('sned'\) names a task method that does not exist on Missing; .* name one of: send/,
    );
  });

  test('rejects two batch methods for one task method', () => {
    class Twice {
      send(): void {}
      @Batch('send')
      a(_tasks: Map<string, unknown>): void {}
      @Batch('send')
      b(_tasks: Map<string, unknown>): void {}
    }
    expect(() => resolveService('Twice', new Twice())).toThrow(/Twice\.b: task method 'send' already has a batch method \(a\)/);
  });

  test('rejects a batch method whose arity is not 1', () => {
    class Arity {
      send(): void {}
      // @ts-expect-error a batch method takes one parameter: the type check says so too
      @Batch('send')
      sendMany(_tasks: Map<string, unknown>, _extra: number): void {}
    }
    const error = (() => {
      try {
        resolveService('Arity', new Arity());
      } catch (e) {
        return e as ServiceDefinitionError;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(ServiceDefinitionError);
    expect(error!.className).toBe('Arity');
    expect(error!.methodName).toBe('sendMany');
    expect(error!.message).toMatch(/exactly one parameter .* declares 2/);
  });

  test('a batch method cannot be the task method of another batch method', () => {
    class Chained {
      send(): void {}
      @Batch('send')
      sendMany(_t: Map<string, unknown>): void {}
      @Batch('sendMany')
      sendManyMany(_t: Map<string, unknown>): void {}
    }
    expect(() => resolveService('Chained', new Chained())).toThrow(
      /Chained\.sendManyMany: @Batch\('sendMany'\) names a task method that does not exist/,
    );
  });

  test('inherited methods and declarations count', () => {
    class Base {
      send(_x: string): void {}
      @Batch('send')
      sendMany(_t: Map<string, string>): void {}
    }
    class Derived extends Base {
      extra(): void {}
    }
    const def = resolveService('Derived', new Derived());
    expect(def.methods.get('send')!.batch!.methodName).toBe('sendMany');
    expect(def.methods.has('extra')).toBe(true);
  });
});
