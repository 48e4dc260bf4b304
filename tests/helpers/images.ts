import { randomBytes, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import sharp from 'sharp';

/** A multipart/form-data body as app.inject (or fetch) sends it. */
export function multipart(
  parts: (
    | { name: string; value: string }
    | { name: string; filename: string; contentType: string; data: Buffer }
  )[],
): { payload: Buffer; headers: Record<string, string> } {
  const boundary = `----stockflow${randomBytes(8).toString('hex')}`;
  const chunks: Buffer[] = [];
  for (const part of parts) {
    if ('value' in part) {
      chunks.push(
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"\r\n\r\n${part.value}\r\n`,
        ),
      );
    } else {
      chunks.push(
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"; filename="${part.filename}"\r\n` +
            `Content-Type: ${part.contentType}\r\n\r\n`,
        ),
        part.data,
        Buffer.from('\r\n'),
      );
    }
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return {
    payload: Buffer.concat(chunks),
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  };
}

/** Shorthand: one `file` part plus optional fields. */
export function imageUpload(
  data: Buffer,
  options: { filename?: string; contentType?: string; fields?: Record<string, string> } = {},
) {
  return multipart([
    ...Object.entries(options.fields ?? {}).map(([name, value]) => ({ name, value })),
    {
      name: 'file',
      filename: options.filename ?? 'image.jpg',
      contentType: options.contentType ?? 'application/octet-stream',
      data,
    },
  ]);
}

/** A JPEG of noise (incompressible, so sizes are realistic); `seed` varies its bytes. */
export function noiseJpeg(width: number, height: number, seed = 0): Promise<Buffer> {
  return sharp({
    create: {
      width,
      height,
      channels: 3,
      background: '#000',
      noise: { type: 'gaussian', mean: 100 + (seed % 50), sigma: 40 },
    },
  })
    .jpeg({ quality: 85 })
    .toBuffer();
}

/** 300 x 200 pixels stored, EXIF orientation 6 (display 200 x 300), with GPS coordinates to strip. */
export function exifRotatedJpeg(): Promise<Buffer> {
  return sharp({ create: { width: 300, height: 200, channels: 3, background: '#c03020' } })
    .jpeg()
    .withMetadata({ orientation: 6 })
    .withExif({ IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 24/1' } })
    .toBuffer();
}

export function alphaPng(width = 400, height = 300): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 4, background: { r: 20, g: 40, b: 220, alpha: 0.5 } } })
    .png()
    .toBuffer();
}

export function tiff16(width = 240, height = 160): Promise<Buffer> {
  const pixels = new Uint16Array(width * height * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7919) % 65_536;
  // TIFF's default compression (JPEG) would make it 8-bit.
  return sharp(pixels, { raw: { width, height, channels: 3 } })
    .toColourspace('rgb16')
    .tiff({ compression: 'deflate' })
    .toBuffer();
}

export async function truncatedJpeg(): Promise<Buffer> {
  const full = await noiseJpeg(800, 600);
  return full.subarray(0, Math.floor(full.length / 2));
}

/** A real small JPEG whose frame header (SOF0) is patched to claim 30,000 x 30,000 pixels. */
export async function hugeHeaderJpeg(): Promise<Buffer> {
  const jpeg = Buffer.from(
    await sharp({ create: { width: 8, height: 8, channels: 3, background: '#888' } })
      .jpeg()
      .toBuffer(),
  );
  for (let i = 2; i < jpeg.length - 9; ) {
    if (jpeg[i] !== 0xff) throw new Error('unexpected JPEG layout');
    const marker = jpeg[i + 1]!;
    const length = jpeg.readUInt16BE(i + 2);
    if (marker === 0xc0 || marker === 0xc2) {
      jpeg.writeUInt16BE(30_000, i + 5); // height
      jpeg.writeUInt16BE(30_000, i + 7); // width
      return jpeg;
    }
    i += 2 + length;
  }
  throw new Error('no SOF marker found');
}

export async function animatedGif(): Promise<Buffer> {
  const frames = await Promise.all(
    ['#ff0000', '#00ff00', '#0000ff'].map((background) =>
      sharp({ create: { width: 40, height: 40, channels: 3, background } })
        .png()
        .toBuffer(),
    ),
  );
  return sharp(frames, { join: { animated: true } })
    .gif()
    .toBuffer();
}

/**
 * Gives a product a processed main image by inserting the rows the publish rule checks (for tests
 * of other features that publish products).
 */
export async function givenMainImage(db: Knex, sku: string): Promise<string> {
  const id = randomUUID();
  await db.transaction(async (trx) => {
    await trx('images').insert({ id, sku, role: 'main', position: 0, current_version: 1 });
    await trx('image_versions').insert({
      image_id: id,
      version: 1,
      sha256: randomBytes(32).toString('hex'),
      source: 'test',
      format: 'jpeg',
      width: 1,
      height: 1,
      bytes: 1,
      has_alpha: false,
      dominant_color: '#000000',
      thumbhash: '',
      preview: '',
      storage: 'local',
      renditions: JSON.stringify([]),
    });
  });
  return id;
}
