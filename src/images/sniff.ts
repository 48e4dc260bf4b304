/**
 * Magic-byte sniffing of the image formats we accept. Dependency-free on purpose: the web process
 * uses it to answer 415 at intake without loading sharp, the worker to check the real format.
 */

export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'gif' | 'tiff' | 'avif';

export const imageMimeTypes: Record<ImageFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  gif: 'image/gif',
  tiff: 'image/tiff',
  avif: 'image/avif',
};

/** Bytes needed to recognise every supported format (AVIF's ftyp box can list several brands). */
export const sniffLength = 64;

const ascii = (bytes: Uint8Array, start: number, end: number) =>
  String.fromCharCode(...bytes.subarray(start, end));

/** The format the first bytes announce, or undefined when they are not a supported image. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.length >= 8 && ascii(bytes, 0, 8) === '\x89PNG\r\n\x1a\n') return 'png';
  if (bytes.length >= 6 && (ascii(bytes, 0, 6) === 'GIF87a' || ascii(bytes, 0, 6) === 'GIF89a')) return 'gif';
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'WEBP') return 'webp';
  if (bytes.length >= 4) {
    const head = ascii(bytes, 0, 4);
    if (head === 'II*\x00' || head === 'MM\x00*') return 'tiff';
  }
  if (bytes.length >= 12 && ascii(bytes, 4, 8) === 'ftyp') {
    // ISO-BMFF: major brand at 8..12, compatible brands after the minor version, to the box's end.
    const boxSize = (bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!;
    const end = Math.min(Math.max(boxSize, 16), bytes.length);
    const brands = [ascii(bytes, 8, 12)];
    for (let at = 16; at + 4 <= end; at += 4) brands.push(ascii(bytes, at, at + 4));
    if (brands.some((b) => b === 'avif' || b === 'avis')) return 'avif';
  }
  return undefined;
}

/**
 * The format a declared Content-Type or file name claims, when it names one we know. Generic
 * declarations (application/octet-stream, no extension) claim nothing.
 */
export function declaredImageFormat(declared: string | undefined): ImageFormat | 'other' | undefined {
  if (!declared) return undefined;
  const value = declared.toLowerCase().split(';')[0]!.trim();
  if (value === '' || value === 'application/octet-stream') return undefined;
  const byMime: Record<string, ImageFormat> = {
    'image/jpeg': 'jpeg',
    'image/jpg': 'jpeg',
    'image/pjpeg': 'jpeg',
    'image/png': 'png',
    'image/webp': 'webp',
    'image/gif': 'gif',
    'image/tiff': 'tiff',
    'image/avif': 'avif',
  };
  if (value.includes('/')) return byMime[value] ?? 'other';
  const byExtension: Record<string, ImageFormat> = {
    jpg: 'jpeg',
    jpeg: 'jpeg',
    jpe: 'jpeg',
    png: 'png',
    webp: 'webp',
    gif: 'gif',
    tif: 'tiff',
    tiff: 'tiff',
    avif: 'avif',
  };
  const extension = value.includes('.') ? value.slice(value.lastIndexOf('.') + 1) : '';
  if (!extension) return undefined;
  return byExtension[extension] ?? 'other';
}
