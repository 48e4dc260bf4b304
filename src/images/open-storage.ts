import type { Config } from '../config.js';
import { createLocalStorage, type ImageStorage } from './storage.js';

/**
 * The storage driver the settings choose. Apart from src/images/storage.ts (the contract and the
 * local driver), so that the Cloudinary driver imports the contract and nothing imports it back
 * but this file, lazily: a process without CLOUDINARY_URL never loads the SDK.
 */

// One storage driver per configuration (tests run several configurations in one process).
const storages = new WeakMap<Config, Promise<ImageStorage>>();

/** The driver of these settings, opened once. */
export function storageFor(config: Config): Promise<ImageStorage> {
  let storage = storages.get(config);
  if (!storage) {
    storage = openImageStorage(config);
    storages.set(config, storage);
  }
  return storage;
}

/** The driver the settings choose: Cloudinary when CLOUDINARY_URL is set, local files otherwise. */
async function openImageStorage(config: Config): Promise<ImageStorage> {
  if (config.images.storage === 'cloudinary') {
    const { createCloudinaryStorage } = await import('./cloudinary-storage.js');
    return createCloudinaryStorage(config.images.cloudinary!, config.CLOUDINARY_FOLDER);
  }
  return createLocalStorage(config.MEDIA_DIR);
}
