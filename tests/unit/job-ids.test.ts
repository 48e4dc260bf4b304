import { describe, expect, it } from 'vitest';
import { jobIdOf } from '../../src/queues/enqueue.js';
import { queueNames } from '../../src/queues/job.js';
import { queueOfJobId } from '../../src/queues/queues.js';

describe('job ids', () => {
  it('are <queue>-<32 characters> whatever the key, and name their queue', () => {
    for (const queue of queueNames) {
      for (const key of ['k', 'x'.repeat(10_000), 'a/b c\n?#%', `${'0'.repeat(32)}-${'f'.repeat(64)}`]) {
        const id = jobIdOf(queue, key);
        expect(id).toMatch(new RegExp(`^${queue}-[A-Za-z0-9_-]{32}$`));
        expect(id.length).toBeLessThan(50);
        expect(queueOfJobId(id)).toBe(queue);
      }
    }
  });

  it('differ for different keys and queues, and are the same for the same key', () => {
    expect(jobIdOf('images', 'a')).toBe(jobIdOf('images', 'a'));
    expect(jobIdOf('images', 'a')).not.toBe(jobIdOf('images', 'b'));
    expect(jobIdOf('images', 'a').slice(7)).toBe(jobIdOf('products', 'a').slice(9));
  });
});
