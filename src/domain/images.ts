import type { Knex } from 'knex';
import { deleteStagedUpload } from '../db/image-uploads.js';
import { DomainError } from '../errors/domain-error.js';
import { appendEvent } from '../events/outbox.js';
import type { StorageDriver, StoredRendition } from '../images/urls.js';
import type { DeletedImage, Image, ImageRole, ImageVariant, ImageVersion } from '../schemas/images.js';

/** Builds a rendition's public URL under the current settings (see src/images/urls.ts). */
export type UrlBuilder = (driver: StorageDriver, rendition: StoredRendition) => string;

interface ImageRow {
  id: string;
  sku: string;
  role: ImageRole;
  position: number;
  alt: string | null;
  current_version: number;
  created_at: Date;
  updated_at: Date;
  deleted_at: Date | null;
}

interface VersionRow {
  image_id: string;
  version: number;
  sha256: string;
  source: string;
  format: string;
  width: number;
  height: number;
  bytes: number;
  has_alpha: boolean;
  orientation: number | null;
  dominant_color: string;
  thumbhash: string;
  preview: string;
  storage: StorageDriver;
  renditions: StoredRendition[];
  created_at: Date;
}

/** What is recorded about an original (dimensions after EXIF orientation); the pipeline measures it. */
export interface OriginalMetadata {
  sha256: string;
  format: string;
  width: number;
  height: number;
  bytes: number;
  hasAlpha: boolean;
  orientation: number | null;
  /** `#rrggbb`, from sharp's 4096-bin histogram. */
  dominantColor: string;
  /** ThumbHash (base64) of the image: a ~25-byte blurred placeholder. */
  thumbhash: string;
  /** A tiny WebP (at most 16 px) as a data URI, for clients without a ThumbHash decoder. */
  preview: string;
}

/** What the pipeline produced for one new version. */
export interface NewImageVersion extends OriginalMetadata {
  source: string;
  storage: StorageDriver;
  renditions: StoredRendition[];
}

function toVersion(row: VersionRow, currentVersion: number, urls: UrlBuilder): ImageVersion {
  const variants: Record<string, ImageVariant> = {};
  for (const r of row.renditions) {
    const variant = variants[r.variant] ?? { width: r.width, height: r.height, urls: {}, bytes: {} };
    variants[r.variant] = variant;
    variant.urls[r.format] = urls(row.storage, r);
    variant.bytes[r.format] = r.bytes;
  }
  return {
    version: row.version,
    current: row.version === currentVersion,
    sha256: row.sha256,
    source: row.source,
    format: row.format,
    width: row.width,
    height: row.height,
    bytes: row.bytes,
    hasAlpha: row.has_alpha,
    orientation: row.orientation,
    dominantColor: row.dominant_color,
    placeholder: { thumbhash: row.thumbhash, preview: row.preview },
    storage: row.storage,
    variants,
    createdAt: row.created_at.toISOString(),
  };
}

function toImage(row: ImageRow, current: VersionRow, urls: UrlBuilder): Image {
  return {
    id: row.id,
    sku: row.sku,
    role: row.role,
    position: row.position,
    alt: row.alt,
    currentVersion: row.current_version,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    current: toVersion(current, row.current_version, urls),
  };
}

const notFound = (sku: string, imageId: string) =>
  new DomainError('not_found', `Image ${imageId} of product ${sku} does not exist`, { sku, imageId });

/** A live (not deleted) image of this product, or undefined. */
export async function findImage(db: Knex, sku: string, imageId: string): Promise<ImageRow | undefined> {
  return db<ImageRow>('images').where({ id: imageId, sku }).whereNull('deleted_at').first();
}

export async function findVersionBySha(db: Knex, imageId: string, sha256: string): Promise<boolean> {
  return (await db('image_versions').where({ image_id: imageId, sha256 }).first('version')) !== undefined;
}

async function readImage(db: Knex, row: ImageRow, urls: UrlBuilder): Promise<Image> {
  const current = await db<VersionRow>('image_versions')
    .where({ image_id: row.id, version: row.current_version })
    .first();
  return toImage(row, current!, urls);
}

async function lockImage(db: Knex, sku: string, imageId: string): Promise<ImageRow> {
  const row = await db<ImageRow>('images')
    .where({ id: imageId, sku })
    .whereNull('deleted_at')
    .forUpdate()
    .first();
  if (!row) throw notFound(sku, imageId);
  return row;
}

/** Locks the product row: image writes of one product are serialised (one main image at a time). */
async function lockProduct(db: Knex, sku: string): Promise<void> {
  const row = await db('products').where({ sku }).forUpdate().first('sku');
  if (!row) throw new DomainError('not_found', `Product ${sku} does not exist`, { sku });
}

/**
 * Records a processed upload as the image's new current version (creating the image for its first
 * one) and writes `image.processed`. The same bytes already recorded for this image are a no-op
 * that returns the image as it is (`deduplicated`). Clears the staged original.
 */
export async function recordImageVersion(
  db: Knex,
  input: {
    sku: string;
    imageId: string;
    create: boolean;
    fields: { alt?: string; position?: number; role?: ImageRole };
    version: NewImageVersion;
  },
  urls: UrlBuilder,
): Promise<{ image: Image; deduplicated: boolean }> {
  const { sku, imageId, fields } = input;
  await lockProduct(db, sku);
  const existing = await db<ImageRow>('images').where({ id: imageId, sku }).forUpdate().first();
  if (existing?.deleted_at || (!existing && !input.create)) throw notFound(sku, imageId);
  await deleteStagedUpload(db, imageId, input.version.sha256);
  if (existing && (await findVersionBySha(db, imageId, input.version.sha256))) {
    return { image: await readImage(db, existing, urls), deduplicated: true };
  }

  const role = fields.role ?? existing?.role ?? 'gallery';
  if (role === 'main') {
    await db('images')
      .where({ sku, role: 'main' })
      .whereNull('deleted_at')
      .whereNot({ id: imageId })
      .update({ role: 'gallery' });
  }
  let versionNumber = 1;
  if (existing) {
    const [{ max }] = (await db('image_versions').where({ image_id: imageId }).max('version as max')) as [
      { max: number },
    ];
    versionNumber = max + 1;
    await db('images')
      .where({ id: imageId })
      .update({
        role,
        current_version: versionNumber,
        ...(fields.alt !== undefined ? { alt: fields.alt } : {}),
        ...(fields.position !== undefined ? { position: fields.position } : {}),
      });
  } else {
    const position =
      fields.position ??
      Number(
        (
          (await db('images').where({ sku }).whereNull('deleted_at').max('position as max').first()) as {
            max: number | null;
          }
        ).max ?? -1,
      ) + 1;
    await db('images').insert({
      id: imageId,
      sku,
      role,
      position,
      alt: fields.alt ?? null,
      current_version: 1,
    });
  }
  const v = input.version;
  await db('image_versions').insert({
    image_id: imageId,
    version: versionNumber,
    sha256: v.sha256,
    source: v.source,
    format: v.format,
    width: v.width,
    height: v.height,
    bytes: v.bytes,
    has_alpha: v.hasAlpha,
    orientation: v.orientation,
    dominant_color: v.dominantColor,
    thumbhash: v.thumbhash,
    preview: v.preview,
    storage: v.storage,
    renditions: JSON.stringify(v.renditions),
    job_id: db.raw(`nullif(current_setting('stockflow.job_id', true), '')`),
  });
  const row = await db<ImageRow>('images').where({ id: imageId }).first();
  const image = await readImage(db, row!, urls);
  await appendEvent(db, {
    type: 'image.processed',
    aggregate: { type: 'image', id: imageId },
    data: { sku, image },
  });
  return { image, deduplicated: false };
}

/** Points the image at one of its earlier versions and writes `image.rolled_back`. */
export async function rollbackImage(
  db: Knex,
  input: { sku: string; imageId: string; version: number },
  urls: UrlBuilder,
): Promise<Image> {
  const row = await lockImage(db, input.sku, input.imageId);
  if (row.current_version === input.version) return readImage(db, row, urls);
  const target = await db('image_versions')
    .where({ image_id: input.imageId, version: input.version })
    .first('version');
  if (!target) {
    throw new DomainError('not_found', `Image ${input.imageId} has no version ${input.version}`, {
      sku: input.sku,
      imageId: input.imageId,
      version: input.version,
    });
  }
  const [updated] = await db<ImageRow>('images')
    .where({ id: input.imageId })
    .update({ current_version: input.version })
    .returning('*');
  const image = await readImage(db, updated!, urls);
  await appendEvent(db, {
    type: 'image.rolled_back',
    aggregate: { type: 'image', id: input.imageId },
    data: { sku: input.sku, fromVersion: row.current_version, toVersion: input.version, image },
  });
  return image;
}

/**
 * Deletes an image (the rows stay, marked deleted; the caller removes the stored files after
 * commit) and writes `image.deleted`. A published product keeps its main image.
 */
export async function deleteImage(db: Knex, input: { sku: string; imageId: string }): Promise<DeletedImage> {
  await lockProduct(db, input.sku);
  const row = await lockImage(db, input.sku, input.imageId);
  if (row.role === 'main') {
    const product = await db('products').where({ sku: input.sku }).first('status');
    if (product?.status === 'published') {
      throw new DomainError(
        'invalid_transition',
        `Image ${input.imageId} is the main image of published product ${input.sku}; upload another main image first`,
        { sku: input.sku, imageId: input.imageId, role: 'main' },
      );
    }
  }
  const [deleted] = await db<ImageRow>('images')
    .where({ id: input.imageId })
    .update({ deleted_at: db.fn.now() } as never)
    .returning('*');
  const result = { id: input.imageId, sku: input.sku, deletedAt: deleted!.deleted_at!.toISOString() };
  await appendEvent(db, {
    type: 'image.deleted',
    aggregate: { type: 'image', id: input.imageId },
    data: result,
  });
  return result;
}

/** Every rendition ever stored for an image (all versions): what deleting it removes from storage. */
export async function listRenditions(
  db: Knex,
  imageId: string,
): Promise<{ storage: StorageDriver; renditions: StoredRendition[] }[]> {
  return db<VersionRow>('image_versions').where({ image_id: imageId }).select('storage', 'renditions');
}

/** The product's live images with their current versions, in position order. */
export async function listImages(db: Knex, sku: string, urls: UrlBuilder): Promise<Image[]> {
  const rows = await db<ImageRow>('images')
    .where({ sku })
    .whereNull('deleted_at')
    .orderBy([{ column: 'position' }, { column: 'created_at' }, { column: 'id' }]);
  if (rows.length === 0) return [];
  const versions = await db<VersionRow>('image_versions').whereIn(
    ['image_id', 'version'],
    rows.map((r) => [r.id, r.current_version]),
  );
  const byImage = new Map(versions.map((v) => [v.image_id, v]));
  return rows.map((row) => toImage(row, byImage.get(row.id)!, urls));
}

export async function getImage(
  db: Knex,
  sku: string,
  imageId: string,
  urls: UrlBuilder,
): Promise<Image | undefined> {
  const row = await findImage(db, sku, imageId);
  return row && readImage(db, row, urls);
}

export async function listImageVersions(
  db: Knex,
  sku: string,
  imageId: string,
  urls: UrlBuilder,
): Promise<ImageVersion[] | undefined> {
  const row = await findImage(db, sku, imageId);
  if (!row) return undefined;
  const versions = await db<VersionRow>('image_versions')
    .where({ image_id: imageId })
    .orderBy('version', 'desc');
  return versions.map((v) => toVersion(v, row.current_version, urls));
}

/** The publishing rule's question: does the product have a processed, live main image? */
export async function hasMainImage(db: Knex, sku: string): Promise<boolean> {
  return (await db('images').where({ sku, role: 'main' }).whereNull('deleted_at').first('id')) !== undefined;
}
