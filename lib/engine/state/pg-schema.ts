// The database state's schema, as numbered migrations applied in order inside one transaction
// under a transaction-scoped advisory lock (two processes starting on an empty database do not
// both create it). `meta.schema_version` says how far a database is; a database from a newer
// virtwire is refused, not written.
import type { PoolClient } from 'pg';
import { VirtwireError } from '../../errors/index.js';

export const SCHEMA = 'virtwire';

const MIGRATIONS: readonly string[] = [
  // 1: records, security groups, the serial, the allocation claims and the lock holders' notes
  `create table virtwire.vms (
     name text primary key,
     record jsonb not null,
     updated_at timestamptz not null default now());
   create table virtwire.security_groups (
     name text primary key,
     grp jsonb not null);
   -- (kind, key) is held by one owner (a VM, or a tenant for what its VMs share); uses say which
   -- VMs hold it, so it is released with the last of them
   create table virtwire.owners (
     kind text not null,
     key text not null,
     owner text not null,
     primary key (kind, key));
   create table virtwire.uses (
     vm text not null references virtwire.vms (name) on delete cascade,
     kind text not null,
     key text not null,
     primary key (vm, kind, key),
     foreign key (kind, key) references virtwire.owners (kind, key));
   create index uses_claim on virtwire.uses (kind, key);
   -- who holds a lock: the session (backend pid) is the truth, this row only says who it is
   create table virtwire.holders (
     backend_pid integer primary key,
     os_pid integer not null,
     host text not null,
     command text not null,
     since timestamptz not null default now());
   insert into virtwire.meta (key, value) values ('serial', '0');`,
];

/** The newest schema this virtwire writes. */
const SCHEMA_VERSION = MIGRATIONS.length;

const MIGRATION_LOCK = 0x76777301; // pg_advisory_xact_lock key: "vws" 1

/** Brings the database's schema to SCHEMA_VERSION; `where` names it in errors. */
export async function migrateSchema(client: PoolClient, where: string): Promise<void> {
  await client.query('begin');
  try {
    await client.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(`create schema if not exists ${SCHEMA}`);
    await client.query(`create table if not exists ${SCHEMA}.meta (key text primary key, value text not null)`);
    const row = await client.query<{ value: string }>(`select value from ${SCHEMA}.meta where key = 'schema_version'`);
    const version = row.rows[0] ? Number(row.rows[0].value) : 0;
    if (version > SCHEMA_VERSION) {
      throw new VirtwireError(
        'STATE_INVALID',
        `the state in ${where} has schema version ${version}, written by a newer virtwire (this one knows up to ${SCHEMA_VERSION})`,
      );
    }
    for (let v = version; v < SCHEMA_VERSION; v++) await client.query(MIGRATIONS[v]!);
    if (version < SCHEMA_VERSION) {
      await client.query(
        `insert into ${SCHEMA}.meta (key, value) values ('schema_version', $1)
         on conflict (key) do update set value = excluded.value`,
        [String(SCHEMA_VERSION)],
      );
    }
    await client.query('commit');
  } catch (e) {
    await client.query('rollback').catch(() => undefined);
    throw e;
  }
}
