import type { Config } from '../config.js';

/** Where a rendition was stored; enough to build its delivery URL under the current settings. */
export interface StoredRendition {
  variant: string;
  format: 'webp' | 'jpeg' | 'avif';
  width: number;
  height: number;
  bytes: number;
  /** Local: path under MEDIA_DIR. Cloudinary: public_id. */
  key: string;
  /** Cloudinary's asset version (upload timestamp); null for local files. */
  version: number | null;
}

export type StorageDriver = 'local' | 'cloudinary';

const extensions = { webp: 'webp', jpeg: 'jpg', avif: 'avif' } as const;

export const fileExtension = (format: StoredRendition['format']) => extensions[format];

/**
 * The public URL of a rendition. Built at read time (not stored), so a new CDN_BASE_URL applies
 * to every image at once. No SDK involved: the web process builds these too.
 * - local: `<CDN_BASE_URL>/media/<key>` (a relative `/media/<key>` without a CDN);
 * - cloudinary: `https://res.cloudinary.com/<cloud>/image/upload/f_auto,q_auto/v<version>/<public_id>.<ext>`.
 */
export function deliveryUrl(
  config: Pick<Config, 'CDN_BASE_URL' | 'images'>,
  driver: StorageDriver,
  rendition: Pick<StoredRendition, 'key' | 'format' | 'version'>,
): string {
  if (driver === 'local') {
    const path = rendition.key.split('/').map(encodeURIComponent).join('/');
    return `${config.CDN_BASE_URL ?? ''}/media/${path}`;
  }
  const cloud = config.images.cloudinary?.cloudName ?? 'unconfigured';
  const version = rendition.version ? `v${rendition.version}/` : '';
  return `https://res.cloudinary.com/${cloud}/image/upload/f_auto,q_auto/${version}${rendition.key}.${fileExtension(rendition.format)}`;
}

/** `deliveryUrl` under these settings, for whoever turns stored versions into URLs. */
export const urlBuilder =
  (config: Pick<Config, 'CDN_BASE_URL' | 'images'>) =>
  (driver: StorageDriver, rendition: Pick<StoredRendition, 'key' | 'format' | 'version'>): string =>
    deliveryUrl(config, driver, rendition);
