import type { Knex } from 'knex';

/**
 * Original image bytes staged by the web process for the images worker. Keyed by (image, content
 * hash): the same bytes sent twice to the same image are staged once, which is also the job's
 * dedupe key. Rows leave when their job has processed or refused them. An upload streams in as
 * pieces (`image_upload_chunks`) and becomes its row once complete.
 */
export interface StagedUpload {
  bytes: Buffer;
  declaredType: string | null;
}

/** Writes one piece of an upload in progress (`seq` from 0, in arrival order). */
export async function stageUploadChunk(
  db: Knex,
  uploadId: string,
  seq: number,
  bytes: Buffer,
): Promise<void> {
  await db('image_upload_chunks').insert({ upload_id: uploadId, seq, bytes });
}

/**
 * Assembles the pieces of a complete upload into its staged row, in Postgres (the web process
 * never holds the whole image), and drops them. Returns false when the same bytes were already
 * staged for this image (the pieces are dropped all the same).
 */
export async function finishStagedUpload(
  db: Knex,
  upload: { uploadId: string; imageId: string; sha256: string; declaredType: string | undefined },
): Promise<boolean> {
  const { rows } = await db.raw<{ rows: unknown[] }>(
    `with pieces as (delete from image_upload_chunks where upload_id = ? returning seq, bytes),
          whole as (select string_agg(bytes, ''::bytea order by seq) as bytes from pieces)
     insert into image_uploads (image_id, sha256, bytes, byte_size, declared_type)
     select ?, ?, bytes, octet_length(bytes), ? from whole where bytes is not null
     on conflict (image_id, sha256) do nothing
     returning image_id`,
    [upload.uploadId, upload.imageId, upload.sha256, upload.declaredType ?? null],
  );
  return rows.length > 0;
}

/** Drops the pieces of an upload that will not be finished (refused, aborted, or already stored). */
export async function discardUploadChunks(db: Knex, uploadId: string): Promise<void> {
  await db('image_upload_chunks').where({ upload_id: uploadId }).delete();
}

export async function loadStagedUpload(
  db: Knex,
  imageId: string,
  sha256: string,
): Promise<StagedUpload | undefined> {
  const row = await db('image_uploads')
    .where({ image_id: imageId, sha256 })
    .first<{ bytes: Buffer; declared_type: string | null } | undefined>('bytes', 'declared_type');
  return row && { bytes: row.bytes, declaredType: row.declared_type };
}

export async function deleteStagedUpload(db: Knex, imageId: string, sha256: string): Promise<void> {
  await db('image_uploads').where({ image_id: imageId, sha256 }).delete();
}

/**
 * Drops uploads no job can still want (their job is gone from Redis by then), and pieces of
 * uploads that never finished (their web process died mid-upload): after two hours, twice the
 * longest request HTTP_REQUEST_TIMEOUT_MS allows.
 */
export async function pruneStagedUploads(db: Knex, olderThanSeconds: number): Promise<number> {
  await db('image_upload_chunks').where('created_at', '<', db.raw(`now() - interval '2 hours'`)).delete();
  return db('image_uploads')
    .where('created_at', '<', db.raw(`now() - make_interval(secs => ?)`, [olderThanSeconds]))
    .delete();
}
