import { describe, expect, test } from 'vitest';
import { planFailures, type FailurePlan } from '../../src/worker/failure-plans.js';

const tasks = (n: number, step?: number) =>
  [...Array(n).keys()].map(() => (step === undefined ? {} : { isolation: { group: 'g', size: n, step } }));
const isolations = (plans: FailurePlan[]) => plans.map((p) => (p.kind === 'isolate' ? p.isolation : null));

describe('planFailures', () => {
  test('bisect: a batch of 5 that failed as a whole goes back as halves of 3 and 2, one step further, in batch order', () => {
    const plans = isolations(planFailures('bisect', tasks(5, 1), true, 5));
    const groups = plans.map((p) => p!.group);
    expect(new Set(groups.slice(0, 3)).size).toBe(1);
    expect(new Set(groups.slice(3)).size).toBe(1);
    expect(groups[0]).not.toBe(groups[3]);
    expect(plans.map((p) => [p!.size, p!.step])).toEqual([
      [3, 2],
      [3, 2],
      [3, 2],
      [2, 2],
      [2, 2],
    ]);
  });

  test('single: each task of the failed batch in a group of its own', () => {
    const plans = isolations(planFailures('single', tasks(3), true, 3));
    expect(new Set(plans.map((p) => p!.group)).size).toBe(3);
    expect(plans.map((p) => [p!.size, p!.step])).toEqual([
      [1, 1],
      [1, 1],
      [1, 1],
    ]);
  });

  test('a task that failed alone retries by its policy, alone; per-task errors and isolation none retry as usual', () => {
    expect(planFailures('bisect', tasks(1), true, 1)).toEqual([{ kind: 'retry', alone: true }]);
    // Alone in its batch after a split: the poison.
    expect(planFailures('bisect', tasks(1, 3), false, 1)).toEqual([{ kind: 'retry', alone: true }]);
    // A per-task error in a batch of several, and a first attempt alone that did not fail as a whole.
    expect(planFailures('bisect', tasks(2), false, 4)).toEqual([
      { kind: 'retry', alone: false },
      { kind: 'retry', alone: false },
    ]);
    expect(planFailures('bisect', tasks(1), false, 1)).toEqual([{ kind: 'retry', alone: false }]);
    expect(planFailures('none', tasks(4), true, 4)).toEqual(Array(4).fill({ kind: 'retry', alone: false }));
  });
});
