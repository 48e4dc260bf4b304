import http from 'node:http';
import https from 'node:https';
import { v2 as cloudinary, type UploadApiErrorResponse, type UploadApiResponse } from 'cloudinary';
import type { Config } from '../config.js';
import { StorageError } from '../errors/storage-error.js';
import type { ImageStorage } from './storage.js';

type CloudinarySettings = NonNullable<Config['images']['cloudinary']>;

const requestTimeoutMs = 30_000;

/**
 * Cloudinary through its official SDK. Credentials and the upload prefix are passed on every call
 * (from our config), and the HTTP agent matches the prefix's protocol: the SDK otherwise picks
 * http or https once, from the environment it saw when it was first loaded.
 *
 * public_ids are deterministic (image, original hash, variant, format) and uploads overwrite, so
 * a retried upload replaces what a failed attempt left instead of adding a duplicate asset.
 */
export function createCloudinaryStorage(settings: CloudinarySettings, folder: string): ImageStorage {
  // No keep-alive: nothing to close at shutdown, and uploads are few and large.
  const agent = settings.uploadPrefix.startsWith('http:') ? new http.Agent() : new https.Agent();
  const credentials = {
    cloud_name: settings.cloudName,
    api_key: settings.apiKey,
    api_secret: settings.apiSecret,
    upload_prefix: settings.uploadPrefix,
    agent,
    timeout: requestTimeoutMs,
  };
  return {
    driver: 'cloudinary',
    put({ key, format, body, invalidate }) {
      const publicId = `${folder}/${key}_${format}`;
      return new Promise((resolve, reject) => {
        const upload = cloudinary.uploader.upload_stream(
          {
            ...credentials,
            resource_type: 'image',
            public_id: publicId,
            overwrite: true,
            invalidate,
          } as never,
          (error?: UploadApiErrorResponse, result?: UploadApiResponse) => {
            if (error || !result) return reject(storageError('upload', publicId, error));
            resolve({ key: result.public_id, version: result.version });
          },
        );
        upload.end(body);
      });
    },
    storedKey: (key, format) => `${folder}/${key}_${format}`,
    async remove(renditions) {
      for (const { key } of renditions) {
        try {
          const result = await cloudinary.uploader.destroy(key, {
            ...credentials,
            resource_type: 'image',
            invalidate: true,
          } as never);
          if (result?.result !== 'ok' && result?.result !== 'not found') {
            throw new StorageError(
              `Cloudinary destroy of ${key} answered ${JSON.stringify(result)}`,
              undefined,
            );
          }
        } catch (error) {
          if (error instanceof StorageError) throw error;
          throw storageError('destroy', key, error as UploadApiErrorResponse);
        }
      }
    },
  };
}

function storageError(
  action: string,
  key: string,
  error: UploadApiErrorResponse | { error?: Error } | undefined,
) {
  const status = (error as UploadApiErrorResponse | undefined)?.http_code;
  const message =
    (error as UploadApiErrorResponse | undefined)?.message ??
    (error as { error?: Error } | undefined)?.error?.message ??
    'no answer';
  return new StorageError(
    `Cloudinary ${action} of ${key} failed (${status ?? 'network'}): ${message}`,
    status,
    {
      cause: error,
    },
  );
}
