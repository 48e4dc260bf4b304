import { createHash } from 'node:crypto';
import os from 'node:os';
import sharp, { type Metadata, type Sharp } from 'sharp';
import { rgbaToThumbHash } from 'thumbhash';
import type { ImageOutputFormat } from '../config.js';
import type { OriginalMetadata as RecordedMetadata } from '../domain/images.js';
import { DomainError } from '../errors/domain-error.js';
import { declaredImageFormat, type ImageFormat, sniffImageFormat } from './sniff.js';

/** The pipeline's stages, reported through job.updateProgress in this order. */
export type PipelineStage = 'validated' | 'metadata' | 'variants' | 'stored';

export interface PipelineSettings {
  variants: { name: string; longEdge: number }[];
  formats: ImageOutputFormat[];
  maxPixels: number;
  timeoutSeconds: number;
}

/** The original's metadata, with its sniffed format. */
export interface OriginalMetadata extends RecordedMetadata {
  format: ImageFormat;
}

export interface Rendition {
  variant: string;
  format: ImageOutputFormat;
  width: number;
  height: number;
  body: Buffer;
}

let configured = false;

/**
 * Process-wide sharp settings, applied once: no libvips operation cache (each image is seen once;
 * the cache only holds memory), and libvips threads per image so that threads x concurrent jobs
 * stay within the cores.
 */
export function configureSharp(threadsPerImage: number, concurrentJobs: number): number {
  const threads =
    threadsPerImage > 0
      ? threadsPerImage
      : Math.max(1, Math.floor(os.availableParallelism() / concurrentJobs));
  if (!configured) {
    sharp.cache(false);
    sharp.concurrency(threads);
    configured = true;
  }
  return sharp.concurrency();
}

export const sha256Hex = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Strictness for untrusted input: invalid pixel data aborts, minor warnings (common in camera JPEGs) do not. */
const failOn = 'error' as const;

/** sharp's own format names for what we sniff. */
const sharpFormat: Record<ImageFormat, string> = {
  jpeg: 'jpeg',
  png: 'png',
  webp: 'webp',
  gif: 'gif',
  tiff: 'tiff',
  avif: 'heif',
};

export interface ValidatedImage {
  format: ImageFormat;
  width: number;
  height: number;
  hasAlpha: boolean;
  orientation: number | null;
}

/**
 * Checks that cost no decoding: the magic bytes (and that a declared type does not lie), then the
 * header: more than `maxPixels` or more than one frame is refused before any pixel is decoded.
 */
export async function validateImage(
  bytes: Buffer,
  declared: string | undefined,
  maxPixels: number,
): Promise<ValidatedImage> {
  const format = sniffImageFormat(bytes);
  if (!format) {
    throw new DomainError(
      'unsupported_media_type',
      'The file is not a JPEG, PNG, WebP, AVIF, GIF or TIFF image',
      {
        supported: ['jpeg', 'png', 'webp', 'avif', 'gif', 'tiff'],
      },
    );
  }
  const claimed = declaredImageFormat(declared);
  if (claimed !== undefined && claimed !== format) {
    throw new DomainError('unsupported_media_type', `The file was declared as ${declared} but is ${format}`, {
      declared,
      actual: format,
    });
  }
  let header: Metadata;
  try {
    header = await sharp(bytes, { failOn, limitInputPixels: false }).metadata();
  } catch (error) {
    throw new DomainError('image_corrupt', 'The image header cannot be read', { reason: messageOf(error) });
  }
  if (header.format !== sharpFormat[format]) {
    throw new DomainError(
      'unsupported_media_type',
      `The file starts like ${format} but decodes as ${header.format}`,
      {
        actual: header.format,
      },
    );
  }
  const pixels = header.width * header.height;
  if (pixels > maxPixels) {
    throw new DomainError('image_too_large', `The image is ${header.width} x ${header.height} pixels`, {
      width: header.width,
      height: header.height,
      pixels,
      maxPixels,
    });
  }
  const frames = header.pages ?? 1;
  if (frames > 1) {
    throw new DomainError(
      'image_too_large',
      `The image has ${frames} frames; only still images are accepted`,
      {
        frames,
      },
    );
  }
  return {
    format,
    width: header.autoOrient?.width ?? header.width,
    height: header.autoOrient?.height ?? header.height,
    hasAlpha: header.hasAlpha,
    orientation: header.orientation ?? null,
  };
}

/**
 * Decodes the original once (auto-oriented, sRGB, already shrunk to the largest variant so JPEG
 * shrink-on-load applies), then derives the metadata and every variant x format from those
 * pixels. Output carries no metadata (EXIF, GPS, XMP, ICC are stripped; sRGB is implied).
 */
export async function renderImage(
  bytes: Buffer,
  validated: ValidatedImage,
  settings: PipelineSettings,
  onStage: (stage: PipelineStage) => Promise<void>,
): Promise<{ original: OriginalMetadata; renditions: Rendition[] }> {
  const largest = Math.max(...settings.variants.map((v) => v.longEdge));
  const timeout = { seconds: settings.timeoutSeconds };
  const master = await sharpStep(() =>
    sharp(bytes, { failOn, limitInputPixels: settings.maxPixels, autoOrient: true })
      .timeout(timeout)
      .resize(largest, largest, { fit: 'inside', withoutEnlargement: true })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true }),
  );
  const raw = {
    raw: { width: master.info.width, height: master.info.height, channels: master.info.channels },
  } as const;
  const fromMaster = () => sharp(master.data, raw).timeout(timeout);

  const [tiny, preview] = await sharpStep(() =>
    Promise.all([
      fromMaster()
        .resize(100, 100, { fit: 'inside' })
        .ensureAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true }),
      fromMaster().resize(16, 16, { fit: 'inside' }).webp({ quality: 40 }).toBuffer(),
    ]),
  );
  // The dominant colour of a 100 px thumbnail is the image's, at a fraction of the cost.
  const stats = await sharpStep(() =>
    sharp(tiny.data, { raw: { width: tiny.info.width, height: tiny.info.height, channels: 4 } }).stats(),
  );
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  const original: OriginalMetadata = {
    sha256: sha256Hex(bytes),
    format: validated.format,
    width: validated.width,
    height: validated.height,
    bytes: bytes.length,
    hasAlpha: validated.hasAlpha,
    orientation: validated.orientation,
    dominantColor: `#${hex(stats.dominant.r)}${hex(stats.dominant.g)}${hex(stats.dominant.b)}`,
    thumbhash: Buffer.from(rgbaToThumbHash(tiny.info.width, tiny.info.height, tiny.data)).toString('base64'),
    preview: `data:image/webp;base64,${preview.toString('base64')}`,
  };
  await onStage('metadata');

  const tasks = settings.variants.flatMap((variant) => {
    const resized = fromMaster().resize(variant.longEdge, variant.longEdge, {
      fit: 'inside',
      withoutEnlargement: true,
    });
    return settings.formats.map((format) => async (): Promise<Rendition> => {
      const { data, info } = await encode(resized.clone(), format).toBuffer({ resolveWithObject: true });
      return { variant: variant.name, format, width: info.width, height: info.height, body: data };
    });
  });
  // Encoders are mostly single-threaded: run as many at once as this job's share of the cores.
  const renditions = await sharpStep(() => runLimited(tasks, sharp.concurrency()));
  await onStage('variants');
  return { original, renditions };
}

async function runLimited<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(limit, tasks.length)) }, async () => {
      while (next < tasks.length) {
        const index = next++;
        results[index] = await tasks[index]!();
      }
    }),
  );
  return results;
}

function encode(image: Sharp, format: ImageOutputFormat): Sharp {
  switch (format) {
    case 'webp':
      return image.webp({ quality: 80, effort: 4 });
    case 'jpeg':
      // JPEG has no alpha: transparent areas become white.
      return image.flatten({ background: '#ffffff' }).jpeg({ quality: 82, progressive: true });
    case 'avif':
      // Effort 2: sharp's default (4) takes about 13x as long for a few percent smaller files.
      return image.avif({ quality: 50, effort: 2 });
  }
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** sharp's failures on untrusted pixels are permanent: map them to stable domain codes. */
async function sharpStep<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof DomainError) throw error;
    const message = messageOf(error);
    if (/timeout/i.test(message)) {
      throw new DomainError('image_timeout', 'Processing the image took longer than allowed', {
        reason: message,
      });
    }
    if (/pixel limit/i.test(message)) {
      throw new DomainError('image_too_large', 'The image has too many pixels', { reason: message });
    }
    if (/unsupported image format/i.test(message)) {
      throw new DomainError('unsupported_media_type', 'The image format is not supported', {
        reason: message,
      });
    }
    throw new DomainError('image_corrupt', 'The image is truncated or corrupt', { reason: message });
  }
}
