import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors/config-error.js';
import { declaredImageFormat, sniffImageFormat } from '../../src/images/sniff.js';
import { deliveryUrl } from '../../src/images/urls.js';

describe('magic-byte sniffing', () => {
  it('recognises every supported format from bytes made by sharp', async () => {
    const base = () => sharp({ create: { width: 8, height: 8, channels: 3, background: '#123456' } });
    const made = {
      jpeg: await base().jpeg().toBuffer(),
      png: await base().png().toBuffer(),
      webp: await base().webp().toBuffer(),
      gif: await base().gif().toBuffer(),
      tiff: await base().tiff().toBuffer(),
      avif: await base().avif().toBuffer(),
    };
    for (const [format, bytes] of Object.entries(made)) expect(sniffImageFormat(bytes)).toBe(format);
  });

  it('refuses text, SVG, PDF, HEIC and short input', () => {
    expect(sniffImageFormat(Buffer.from('hello, I am a text file named photo.jpg'))).toBeUndefined();
    expect(sniffImageFormat(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'))).toBeUndefined();
    expect(sniffImageFormat(Buffer.from('%PDF-1.7\n'))).toBeUndefined();
    const heic = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypheic\0\0\0\0mif1heic')]);
    expect(sniffImageFormat(heic)).toBeUndefined();
    expect(sniffImageFormat(Buffer.from([0xff, 0xd8]))).toBeUndefined();
  });

  it('reads what a Content-Type or file name claims; generic declarations claim nothing', () => {
    expect(declaredImageFormat('image/jpeg')).toBe('jpeg');
    expect(declaredImageFormat('image/png; charset=binary')).toBe('png');
    expect(declaredImageFormat('text/plain')).toBe('other');
    expect(declaredImageFormat('application/octet-stream')).toBeUndefined();
    expect(declaredImageFormat('Holiday.JPG')).toBe('jpeg');
    expect(declaredImageFormat('scan.tif')).toBe('tiff');
    expect(declaredImageFormat('notes.txt')).toBe('other');
    expect(declaredImageFormat('blob')).toBeUndefined();
  });
});

describe('image settings', () => {
  it('parses variants, formats and the storage driver', () => {
    const defaults = parseConfig({});
    expect(defaults.images.variants).toEqual([
      { name: 'thumb', longEdge: 200 },
      { name: 'medium', longEdge: 800 },
      { name: 'large', longEdge: 1600 },
    ]);
    expect(defaults.images.formats).toEqual(['webp', 'jpeg']);
    expect(defaults.images.storage).toBe('local');
    expect(defaults.concurrency.images).toBe(1);

    const custom = parseConfig({
      IMAGE_VARIANTS: 'small:320,hero:2400',
      IMAGE_AVIF: 'true',
      CLOUDINARY_URL: 'cloudinary://key:s%2Fecret@my-cloud?upload_prefix=http://127.0.0.1:9',
    });
    expect(custom.images.variants.map((v) => v.name)).toEqual(['small', 'hero']);
    expect(custom.images.formats).toEqual(['webp', 'jpeg', 'avif']);
    expect(custom.images.cloudinary).toEqual({
      cloudName: 'my-cloud',
      apiKey: 'key',
      apiSecret: 's/ecret',
      uploadPrefix: 'http://127.0.0.1:9',
    });
  });

  it('names the bad variable', () => {
    expect(() => parseConfig({ IMAGE_VARIANTS: 'thumb' })).toThrow(/IMAGE_VARIANTS/);
    expect(() => parseConfig({ IMAGE_VARIANTS: 'a:1,a:2' })).toThrow(ConfigError);
    expect(() => parseConfig({ CLOUDINARY_URL: 'https://example.com' })).toThrow(/CLOUDINARY_URL/);
  });

  it('builds delivery URLs: CDN in front of local media, f_auto,q_auto and the version on Cloudinary', () => {
    const rendition = { key: 'SKU 1/abc/0123/thumb.webp', format: 'webp' as const, version: null };
    expect(deliveryUrl(parseConfig({}), 'local', rendition)).toBe('/media/SKU%201/abc/0123/thumb.webp');
    expect(deliveryUrl(parseConfig({ CDN_BASE_URL: 'https://cdn.example.com/' }), 'local', rendition)).toBe(
      'https://cdn.example.com/media/SKU%201/abc/0123/thumb.webp',
    );
    const cloud = parseConfig({ CLOUDINARY_URL: 'cloudinary://k:s@shop' });
    expect(
      deliveryUrl(cloud, 'cloudinary', { key: 'stockflow/S/i/h/thumb_jpeg', format: 'jpeg', version: 1712 }),
    ).toBe('https://res.cloudinary.com/shop/image/upload/f_auto,q_auto/v1712/stockflow/S/i/h/thumb_jpeg.jpg');
  });
});
