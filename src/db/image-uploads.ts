import type { Knex } from 'knex';

/**
 * Original image bytes staged by the web process for the images worker. Keyed by (image, content
 * hash): the same bytes sent twice to the same image are staged once, which is also the job's
 * dedupe key. Rows leave when their job has processed or refused them.
 */
export interface StagedUpload {
  bytes: Buffer;
  declaredType: string | null;
}

/** Stages bytes; returns false when the same bytes were already staged for this image. */
export async function stageUpload(
  db: Knex,
  upload: { imageId: string; sha256: string; bytes: Buffer; declaredType: string | undefined },
): Promise<boolean> {
  const inserted = await db('image_uploads')
    .insert({
      image_id: upload.imageId,
      sha256: upload.sha256,
      bytes: upload.bytes,
      byte_size: upload.bytes.length,
      declared_type: upload.declaredType ?? null,
    })
    .onConflict(['image_id', 'sha256'])
    .ignore()
    .returning('image_id');
  return inserted.length > 0;
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

/** Drops uploads no job can still want (their job is gone from Redis by then). */
export async function pruneStagedUploads(db: Knex, olderThanSeconds: number): Promise<number> {
  return db('image_uploads')
    .where('created_at', '<', db.raw(`now() - make_interval(secs => ?)`, [olderThanSeconds]))
    .delete();
}
