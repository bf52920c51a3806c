// PostgreSQL for the state tests: the private cluster scripts/postgres.sh starts (installed from
// Debian's packages where missing, loopback only), a database of its own per test file (dropped
// after), a restart, and a loopback proxy that can black-hole a connection (a partition).
import { execa } from 'execa';
import { createServer, connect, type Server, type Socket } from 'node:net';
import pg from 'pg';

const SCRIPT = new URL('../../scripts/postgres.sh', import.meta.url).pathname;

/** The private cluster's admin URL (started if it is not running). */
export async function privateCluster(): Promise<string> {
  const { stdout } = await execa('bash', [SCRIPT]);
  return stdout.trim().split('\n').at(-1)!;
}

/** A new empty database `vwt_<prefix>_<random>` on the cluster, and how to drop it. */
export async function freshDatabase(
  admin: string,
  prefix: string,
): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `vwt_${prefix}_${Math.random().toString(36).slice(2, 8)}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  try {
    await client.query(`create database ${client.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      try {
        await c.query(`drop database if exists ${c.escapeIdentifier(name)} with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** Restarts the private cluster (fast shutdown: every session is ended), waiting until it accepts again. */
export async function restartCluster(): Promise<void> {
  const dir = process.env.VIRTWIRE_PG_DIR ?? '/var/lib/virtwire-pg';
  const bin = (await execa('bash', ['-c', 'ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1'])).stdout.trim();
  // -l: the server's output goes to its log, not to a pipe execa would wait on forever
  await execa('runuser', [
    '-u',
    'postgres',
    '--',
    `${bin}/pg_ctl`,
    '-D',
    `${dir}/data`,
    '-l',
    `${dir}/server.log`,
    '-m',
    'fast',
    '-w',
    'restart',
  ]);
}

/**
 * A TCP proxy on loopback to the cluster. `cut()` is a partition: bytes stop flowing both ways
 * and nothing is closed, so neither end learns of it (as when a network drops packets).
 */
export class PartitionProxy {
  private server: Server | undefined;
  private readonly pairs: [Socket, Socket][] = [];
  private cutOff = false;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      this.pairs.push([client, upstream]);
      const forward = (from: Socket, to: Socket) =>
        from.on('data', (d) => {
          if (!this.cutOff) to.write(d);
        });
      forward(client, upstream);
      forward(upstream, client);
      const end = () => {
        if (this.cutOff) return;
        client.destroy();
        upstream.destroy();
      };
      client.on('close', end).on('error', () => undefined);
      upstream.on('close', end).on('error', () => undefined);
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** A URL like `url` that goes through the proxy. */
  via(url: string): string {
    const u = new URL(url);
    u.host = `127.0.0.1:${this.port}`;
    return u.toString();
  }

  cut(): void {
    this.cutOff = true;
  }

  async stop(): Promise<void> {
    for (const pair of this.pairs) for (const s of pair) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
