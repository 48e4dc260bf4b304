import type { Knex } from 'knex';

/**
 * Product images: `images` (one row per picture of a product, pointing at its current version),
 * `image_versions` (every processed upload: original hash, metadata, stored renditions) and
 * `image_uploads` (original bytes staged by the web process until the images worker has processed
 * them: web and worker run on different machines, so not on local disk).
 */
export async function up(db: Knex): Promise<void> {
  await db.raw(`
    create table image_uploads (
      image_id uuid not null,
      sha256 text not null constraint image_uploads_sha256_format check (sha256 ~ '^[0-9a-f]{64}$'),
      bytes bytea not null,
      byte_size integer not null,
      declared_type text,
      created_at timestamptz not null default now(),
      primary key (image_id, sha256)
    );
    create index image_uploads_created_at on image_uploads (created_at);

    create table images (
      id uuid primary key,
      sku text not null references products (sku),
      role text not null constraint images_role_known check (role in ('main', 'gallery')),
      position integer not null default 0 constraint images_position_non_negative check (position >= 0),
      alt text constraint images_alt_length check (char_length(alt) <= 500),
      current_version integer not null,
      version integer not null default 1,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      deleted_at timestamptz
    );
    create index images_sku_position on images (sku, position, created_at) where deleted_at is null;
    -- At most one main image per product; a new main demotes the old one to gallery.
    create unique index images_one_main on images (sku) where role = 'main' and deleted_at is null;

    create trigger images_version_on_insert before insert on images
      for each row execute function stockflow_version_on_insert();
    create trigger images_version_on_update before update on images
      for each row execute function stockflow_version_on_update();
    create trigger images_audit after insert or update or delete on images
      for each row execute function stockflow_audit('id');

    create table image_versions (
      image_id uuid not null references images (id),
      version integer not null constraint image_versions_version_positive check (version >= 1),
      sha256 text not null constraint image_versions_sha256_format check (sha256 ~ '^[0-9a-f]{64}$'),
      source text not null,
      format text not null,
      width integer not null,
      height integer not null,
      bytes integer not null,
      has_alpha boolean not null,
      orientation integer,
      dominant_color text not null,
      thumbhash text not null,
      preview text not null,
      storage text not null constraint image_versions_storage_known check (storage in ('local', 'cloudinary')),
      renditions jsonb not null constraint image_versions_renditions_array check (jsonb_typeof(renditions) = 'array'),
      job_id text,
      created_at timestamptz not null default now(),
      primary key (image_id, version),
      -- The dedupe key: the same bytes uploaded to the same image are the same version.
      constraint image_versions_image_sha256 unique (image_id, sha256)
    );
    create trigger image_versions_append_only before update or delete on image_versions
      for each row execute function stockflow_forbid_change();

    alter table images add constraint images_current_version_exists
      foreign key (id, current_version) references image_versions (image_id, version)
      deferrable initially deferred;
  `);
}

export async function down(db: Knex): Promise<void> {
  await db.raw(`
    alter table if exists images drop constraint if exists images_current_version_exists;
    drop table if exists image_versions, images, image_uploads;
  `);
}
