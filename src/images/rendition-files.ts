import type { Knex } from 'knex';
import type { Config } from '../config.js';
import { listRenditions } from '../domain/images.js';
import type { Logger } from '../log.js';
import { storageFor } from './open-storage.js';
import type { StoredRendition } from './urls.js';

/** Removes the stored files of a deleted image: after its commit, and again on a retry (removing what is gone is a no-op). */
export async function removeImageFiles(
  deps: { db: Knex; config: Config },
  imageId: string,
  log: Logger,
): Promise<void> {
  const storage = await storageFor(deps.config);
  for (const version of await listRenditions(deps.db, imageId)) {
    if (version.storage !== storage.driver) {
      log.warn({ storage: version.storage, imageId }, 'renditions left on a storage no longer configured');
      continue;
    }
    await storage.remove(version.renditions);
  }
}

/** Removes renditions a failed job stored (or began to) that no version of the image records. */
export async function removeUnrecorded(
  deps: { db: Knex; config: Config },
  imageId: string,
  storing: Pick<StoredRendition, 'key' | 'format'>[],
  log: Logger,
): Promise<void> {
  const storage = await storageFor(deps.config);
  const recorded = new Set(
    (await listRenditions(deps.db, imageId)).flatMap((v) => v.renditions.map((r) => r.key)),
  );
  const orphans = storing.filter((r) => !recorded.has(r.key));
  try {
    await storage.remove(orphans);
    if (orphans.length > 0) log.info({ renditions: orphans.length }, 'removed renditions of a failed job');
  } catch (error) {
    // The job fails either way; orphaned files cost space, not correctness.
    log.warn(
      { err: error, renditions: orphans.map((r) => r.key) },
      'could not remove renditions of a failed job',
    );
  }
}
