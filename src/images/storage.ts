import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileExtension, type StorageDriver, type StoredRendition } from './urls.js';

export interface PutObject {
  /**
   * `<sku>/<imageId>/<original sha-256 prefix>/<variant>`: deterministic, so a retried upload lands
   * on the same key; the driver adds the format (extension or suffix).
   */
  key: string;
  format: StoredRendition['format'];
  body: Buffer;
  /** The upload may replace an asset a CDN already holds: ask for invalidation (Cloudinary). */
  invalidate: boolean;
}

/** A small storage interface: the pipeline writes renditions, the delete job removes them. */
export interface ImageStorage {
  readonly driver: StorageDriver;
  /** Writes (or overwrites) one rendition; returns the stored key and the storage's version. */
  put(object: PutObject): Promise<{ key: string; version: number | null }>;
  /** The stored key `put` returns for this key and format, known before the upload. */
  storedKey(key: string, format: StoredRendition['format']): string;
  /** Removes renditions; removing one that is already gone is not an error. */
  remove(renditions: Pick<StoredRendition, 'key' | 'format'>[]): Promise<void>;
}

/**
 * Files under `mediaDir`, named with the original's content hash (in the key) so the web process
 * can serve them with immutable cache headers. Writes go to a temporary file renamed into place,
 * so a reader never sees half a file and a retry simply replaces it.
 */
export function createLocalStorage(mediaDir: string): ImageStorage {
  const root = path.resolve(mediaDir);
  const fileOf = (key: string, format: StoredRendition['format']) => {
    const file = path.resolve(root, `${key}.${fileExtension(format)}`);
    if (!file.startsWith(`${root}${path.sep}`)) throw new Error(`storage key escapes MEDIA_DIR: ${key}`);
    return file;
  };
  return {
    driver: 'local',
    async put({ key, format, body }) {
      const file = fileOf(key, format);
      await mkdir(path.dirname(file), { recursive: true });
      const temporary = `${file}.${randomBytes(6).toString('hex')}.tmp`;
      try {
        await writeFile(temporary, body);
        await rename(temporary, file);
      } catch (error) {
        await rm(temporary, { force: true });
        throw error;
      }
      return { key: `${key}.${fileExtension(format)}`, version: null };
    },
    storedKey: (key, format) => `${key}.${fileExtension(format)}`,
    async remove(renditions) {
      for (const { key } of renditions) {
        const file = path.resolve(root, key);
        if (!file.startsWith(`${root}${path.sep}`)) continue;
        await unlink(file).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') throw error;
        });
      }
    },
  };
}
