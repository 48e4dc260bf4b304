import { createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { HttpProblem } from '../errors/http-problem.js';
import { declaredImageFormat, sniffImageFormat, sniffLength } from '../images/sniff.js';
import { refuseUrl } from '../outbound/address-guard.js';
import { httpUrlSchema } from '../schemas/fields.js';
import { imageFieldsSchema } from '../schemas/images.js';
import { isUnstorableString, unstorableProblem } from './json-body.js';

/** What a POST of image bytes carries, after intake checks (the bytes are staged). */
export interface UploadIntake {
  kind: 'upload';
  /** Of the whole file, hashed as it streamed through. */
  sha256: string;
  declaredType: string | undefined;
  fields: z.output<typeof imageFieldsSchema>;
}

/** What a POST of a source URL carries, after intake checks. */
export interface UrlIntake {
  kind: 'url';
  url: string;
  fields: z.output<typeof imageFieldsSchema>;
}

/**
 * Where the bytes of an upload go as they arrive: pieces of `uploadPieceBytes` (the last one
 * shorter), numbered from 0. The buffer is reused once the returned promise settles.
 */
export type StagePiece = (seq: number, bytes: Buffer) => Promise<void>;

/** Bytes of an upload held in memory before they are written to their staging place. */
const uploadPieceBytes = 256 * 1024;

const urlBodySchema = imageFieldsSchema.extend({ sourceUrl: httpUrlSchema }).strict();

const multipartFieldNames = new Set(['alt', 'position', 'role']);

/** Longest file name or content type of the file part (the job's `declaredType` holds up to 200). */
const maxPartLabelLength = 200;
const openapiSchema = (schema: z.ZodType) => z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input' });

/** Both body forms as an OpenAPI requestBody (the routes parse them themselves): a file picker in Swagger UI. */
export const imageIntakeRequestBody = {
  required: true,
  content: {
    'multipart/form-data': {
      schema: openapiSchema(
        imageFieldsSchema.extend({
          file: z
            .string()
            .meta({ format: 'binary', description: 'The image: JPEG, PNG, WebP, AVIF, GIF or TIFF' }),
        }),
      ),
    },
    'application/json': {
      schema: openapiSchema(urlBodySchema),
      example: { sourceUrl: 'https://images.example.com/shirt.jpg', role: 'main', alt: 'Red T-shirt' },
    },
  },
};

function validationProblem(where: string, issues: { path: string; message: string }[]): HttpProblem {
  return new HttpProblem(400, 'validation_failed', `The ${where} has ${issues.length} invalid field(s)`, {
    errors: issues.map((i) => ({ in: where, ...i })),
  });
}

const unsupported = (detail: string) =>
  new HttpProblem(415, 'unsupported_media_type', detail, {
    details: {
      supported: ['image/jpeg', 'image/png', 'image/webp', 'image/avif', 'image/gif', 'image/tiff'],
    },
  });

const tooLarge = (maxBytes: number) =>
  new HttpProblem(413, 'payload_too_large', `The image is larger than ${maxBytes} bytes`, {
    details: { maxBytes },
  });

/** Reads the JSON body form of the image routes: `{ sourceUrl, alt?, position?, role? }`. */
export function readUrlIntake(request: FastifyRequest, options: { allowPrivateSources: boolean }): UrlIntake {
  const parsed = urlBodySchema.safeParse(request.body ?? {});
  if (!parsed.success) {
    throw validationProblem(
      'body',
      parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
    );
  }
  const { sourceUrl, ...fields } = parsed.data;
  // Literal non-public addresses and localhost can never be fetched: refuse them here. Names are
  // checked again by the job when it connects (after DNS, on every redirect).
  const refused = refuseUrl(sourceUrl, options.allowPrivateSources);
  if (refused) {
    throw new HttpProblem(422, 'source_forbidden', `The sourceUrl ${refused}`, {
      errors: [{ in: 'body', path: 'sourceUrl', message: refused }],
    });
  }
  return { kind: 'url', url: sourceUrl, fields };
}

/**
 * Reads the multipart body form of the image routes: a `file` part and optional `alt`,
 * `position`, `role` fields. The file streams through: it is hashed and handed to `stage` piece
 * by piece, never held whole. Answers 415 as soon as the file's first bytes are not a supported
 * image and 413 once it passes `maxBytes` (the pieces staged so far are then the caller's to
 * discard); deeper checks are the job's.
 */
export async function readUploadIntake(
  request: FastifyRequest,
  options: { maxBytes: number },
  stage: StagePiece,
): Promise<UploadIntake> {
  const { maxBytes } = options;
  const rawFields: Record<string, string> = {};
  let file: { sha256: string; declaredType: string | undefined } | undefined;
  try {
    for await (const part of request.parts({
      limits: { fileSize: maxBytes, files: 1, fields: 10, fieldSize: 1024, parts: 12 },
    })) {
      if (part.type === 'field') {
        if (!multipartFieldNames.has(part.fieldname)) {
          throw validationProblem('body', [{ path: part.fieldname, message: 'unknown field' }]);
        }
        const value = String(part.value);
        if (isUnstorableString(value)) throw unstorableProblem('body', part.fieldname);
        rawFields[part.fieldname] = value;
        continue;
      }
      if (part.fieldname !== 'file') {
        part.file.resume();
        throw validationProblem('body', [
          { path: part.fieldname, message: 'the image goes in a part named file' },
        ]);
      }
      // The name and type are stored with the upload and carried in the job: bound them here.
      for (const [path, value] of [
        ['file.filename', part.filename],
        ['file.contentType', part.mimetype],
      ] as const) {
        if (value && (value.length > maxPartLabelLength || isUnstorableString(value))) {
          part.file.resume();
          throw validationProblem('body', [
            {
              path,
              message: `must be at most ${maxPartLabelLength} characters, without NUL or lone surrogates`,
            },
          ]);
        }
      }
      const hash = createHash('sha256');
      // One buffer per upload, filled and written piece by piece: no copy of the file piles up.
      const piece = Buffer.allocUnsafe(uploadPieceBytes);
      let filled = 0;
      let seq = 0;
      let sniffed = false;
      const sniff = () => {
        sniffed = true;
        if (!sniffImageFormat(piece.subarray(0, filled)))
          throw unsupported('The file is not a supported image');
      };
      const flush = async () => {
        if (filled > 0) await stage(seq++, piece.subarray(0, filled));
        filled = 0;
      };
      // Reading waits while a piece is written: the socket is paused, nothing piles up in memory.
      for await (const chunk of part.file as AsyncIterable<Buffer>) {
        hash.update(chunk);
        for (let at = 0; at < chunk.length; ) {
          const copied = chunk.copy(piece, filled, at);
          filled += copied;
          at += copied;
          if (!sniffed && filled >= sniffLength) sniff();
          if (filled === piece.length) await flush();
        }
      }
      if (part.file.truncated) throw tooLarge(maxBytes);
      if (!sniffed) sniff();
      await flush();
      // A generic Content-Type says nothing: fall back to what the file name claims.
      const mime = declaredImageFormat(part.mimetype) === undefined ? undefined : part.mimetype;
      file = { sha256: hash.digest('hex'), declaredType: mime ?? (part.filename || undefined) };
    }
  } catch (error) {
    if (error instanceof HttpProblem) throw error;
    const code = (error as { code?: string }).code;
    if (code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge(maxBytes);
    if (code === 'FST_PARTS_LIMIT' || code === 'FST_FILES_LIMIT' || code === 'FST_FIELDS_LIMIT') {
      throw new HttpProblem(
        413,
        'payload_too_large',
        'Send one file part named file and at most alt, position, role',
      );
    }
    throw error;
  }
  if (!file) throw validationProblem('body', [{ path: 'file', message: 'a file part is required' }]);
  const fields = imageFieldsSchema.safeParse(rawFields);
  if (!fields.success) {
    throw validationProblem(
      'body',
      fields.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
    );
  }
  return { kind: 'upload', sha256: file.sha256, declaredType: file.declaredType, fields: fields.data };
}
