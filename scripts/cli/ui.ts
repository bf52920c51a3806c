// How the CLI talks to a person or a program: plain lines (timestamped while applying), a live
// list on a terminal that always stops, colour only on a terminal and never with NO_COLOR or
// --no-color, and Terraform-style JSON events (`apply --json`), one object per line.
import type { Change, ChangeStatus } from '../../lib/index.js';

export interface UiOptions {
  quiet?: boolean;
  color?: boolean;
  json?: boolean;
}

const CODES = { red: 31, green: 32, yellow: 33, cyan: 36, bold: 1, dim: 2 } as const;
export type Colour = keyof typeof CODES;

export class Ui {
  readonly colour: boolean;

  constructor(readonly options: UiOptions = {}) {
    this.colour = options.color !== false && process.stdout.isTTY === true && !process.env.NO_COLOR && !options.json;
  }

  paint(text: string, colour: Colour): string {
    return this.colour ? `\x1b[${CODES[colour]}m${text}\x1b[0m` : text;
  }

  /** A result line: printed even with --quiet (not in JSON mode). */
  out(line: string): void {
    if (!this.options.json) console.log(line);
  }

  /** A progress or explanation line: not with --quiet. */
  say(line: string): void {
    if (!this.options.quiet && !this.options.json) console.log(line);
  }

  warn(line: string): void {
    if (!this.options.json) console.error(this.paint(`Warning: ${line}`, 'yellow'));
  }

  /** One Terraform-style machine-readable event (`-json`): a JSON object per line. */
  event(
    type: string,
    message: string,
    fields: Record<string, unknown> = {},
    level: 'info' | 'warn' | 'error' = 'info',
  ): void {
    if (!this.options.json) return;
    console.log(
      JSON.stringify({
        '@level': level,
        '@message': message,
        '@module': 'virtwire.ui',
        '@timestamp': new Date().toISOString(),
        type,
        ...fields,
      }),
    );
  }
}

const stamp = () => new Date().toISOString().slice(11, 19);
const label = (c: Change) => `${c.kind} ${c.name}`;

/** Reports each change of an apply: live on a terminal, timestamped lines otherwise, or JSON events. */
export class Progress {
  private readonly rows = new Map<
    string,
    { status: string; step?: string; since: number; until?: number; failed?: boolean }
  >();
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly ui: Ui) {
    if (process.stdout.isTTY && !ui.options.quiet && !ui.options.json) this.timer = setInterval(() => this.draw(), 500);
  }

  get live(): boolean {
    return this.timer !== undefined;
  }

  report = (c: Change, status: ChangeStatus, detail?: string): void => {
    const key = label(c);
    const row = this.rows.get(key) ?? { status, since: Date.now() };
    const elapsed = ((Date.now() - row.since) / 1000).toFixed(1);
    if (status === 'progress') row.step = detail;
    else row.status = status;
    if (status === 'done' || status === 'failed' || status === 'skipped') row.until = Date.now();
    if (status === 'failed') row.failed = true;
    this.rows.set(key, row);
    const address = `${c.kind}.${c.name}`;
    const hook = { resource: { addr: address, resource_type: c.kind, resource_name: c.name }, action: c.action };
    if (status === 'start') this.ui.event('apply_start', `${address}: ${c.action} started`, { hook });
    else if (status === 'progress')
      this.ui.event('apply_progress', `${address}: ${detail}`, {
        hook: { ...hook, step: detail, elapsed_seconds: Number(elapsed) },
      });
    else if (status === 'done')
      this.ui.event('apply_complete', `${address}: ${c.action} complete after ${elapsed}s`, {
        hook: { ...hook, elapsed_seconds: Number(elapsed) },
      });
    else if (status === 'skipped') this.ui.event('apply_skipped', `${address}: not begun (stopped)`, { hook });
    else this.ui.event('apply_errored', `${address}: ${detail}`, { hook: { ...hook, error: detail } }, 'error');
    if (this.live) this.draw();
    else
      this.ui.say(
        `${stamp()} ${key}: ${c.action} ${status === 'progress' ? `… ${detail}` : status}${status === 'failed' && detail ? ` (${detail})` : ''}`,
      );
  };

  /** Ends the live list — after success, failure or a stop alike (a timer left running never exits). */
  stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.draw();
  }

  private draw(): void {
    const mark = (r: { status: string; failed?: boolean }) =>
      r.failed
        ? this.ui.paint('✗', 'red')
        : r.status === 'done'
          ? this.ui.paint('✓', 'green')
          : r.status === 'skipped'
            ? '-'
            : '…';
    const lines = [...this.rows].map(([name, r]) => {
      const state = r.status === 'start' ? (r.step ?? 'start') : r.status;
      const seconds = (((r.until ?? Date.now()) - r.since) / 1000).toFixed(0).padStart(4);
      return `  ${mark(r)} ${name.padEnd(28)} ${state.padEnd(14)} ${seconds} s`;
    });
    process.stdout.write((this.drawn ? `\x1b[${this.drawn}A` : '') + lines.map((l) => `\x1b[2K${l}\n`).join(''));
    this.drawn = lines.length;
  }
}
