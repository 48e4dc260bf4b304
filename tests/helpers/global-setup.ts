import type { TestProject } from 'vitest/node';
import { createDb } from '../../src/db/knex.js';
import { migrateLatest } from '../../src/db/migrate.js';
import { adminQuery, testDatabaseUrl } from './databases.js';
import { startScratchCluster } from './scratch-redis.js';

declare module 'vitest' {
  export interface ProvidedContext {
    templateDatabase: string;
    /** REDIS_CLUSTER_NODES of the run's scratch cluster (the redis-cluster project only). */
    redisClusterNodes: string | undefined;
  }
}

/**
 * Migrates one template database per test run; every test file clones it
 * (CREATE DATABASE … TEMPLATE …), which takes milliseconds instead of a migration run per file.
 */
export default async function setup(project: TestProject) {
  // One template per project (the inventory tests run in a second project): their setups run side by side.
  const template = `stockflow_tpl_${process.pid}_${project.name.replace(/[^a-z0-9]/gi, '_').toLowerCase()}`;
  await adminQuery(`drop database if exists ${template} with (force)`);
  await adminQuery(`create database ${template}`);
  const db = createDb({ DATABASE_URL: testDatabaseUrl(template), DATABASE_POOL_MAX: 2 });
  try {
    await migrateLatest(db);
  } finally {
    await db.destroy();
  }
  // Postgres refuses to clone a template that has connections; forbid new ones outright.
  await adminQuery(`alter database ${template} with allow_connections false`);
  project.provide('templateDatabase', template);
  // The redis-cluster project (vitest.config.ts) runs its files against a 3-master cluster of its own.
  const cluster = project.config.env?.TEST_REDIS_CLUSTER ? await startScratchCluster() : undefined;
  project.provide('redisClusterNodes', cluster?.nodes);
  return async () => {
    await cluster?.stop();
    await adminQuery(`drop database if exists ${template} with (force)`);
  };
}
