// The service of the jobs example (README, "Jobs"): inserts rows in batches,
// refusing those without a valid email. Plain JavaScript, as `sheaf worker`
// loads it from a sheaf.yml; decorators are applied by hand.
import { Batch, NonRetryableError } from '../../dist/index.js';

export class Rows {
  insert(_row) {}

  // One call per batch of rows: a real service would write them with one statement.
  async insertMany(rows) {
    const results = new Map();
    for (const [taskId, row] of rows) {
      results.set(taskId, row.email.includes('@') ? `inserted ${row.email}` : new NonRetryableError(`row ${row.id}: no valid email`));
    }
    return results;
  }
}
Batch('insert')(Rows.prototype, 'insertMany', Object.getOwnPropertyDescriptor(Rows.prototype, 'insertMany'));
