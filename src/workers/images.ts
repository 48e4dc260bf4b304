import { deleteImage, rollbackImage } from '../domain/images.js';
import { processImage } from '../images/process-image.js';
import { removeImageFiles } from '../images/rendition-files.js';
import { urlBuilder } from '../images/urls.js';
import { applyOnce } from './group-commit.js';
import type { QueueHandlers } from './processor.js';

export const imageHandlers = {
  'image.process': (ctx, payload) =>
    processImage({ ...ctx, applyOnce: (apply) => applyOnce(ctx.deps.db, ctx.job, ctx.meta, apply) }, payload),
  'image.rollback': ({ deps, job, meta }, payload) =>
    applyOnce(deps.db, job, meta, (trx) => rollbackImage(trx, payload, urlBuilder(deps.config))),
  'image.delete': async ({ deps, job, meta, log }, payload) => {
    const result = await applyOnce(deps.db, job, meta, (trx) => deleteImage(trx, payload));
    await removeImageFiles(deps, payload.imageId, log);
    return result;
  },
} satisfies QueueHandlers<'images'>;
