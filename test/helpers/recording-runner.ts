// A CommandRunner that runs nothing: it records every argv (and batch input) and answers from
// a list of canned replies, so unit tests can check exactly what would run.
import type { CommandRunner, RunOptions, RunResult } from '../../lib/host/index.js';

export class RecordingRunner implements CommandRunner {
  readonly netns = undefined;
  readonly calls: { argv: string[]; input?: string }[] = [];
  constructor(
    private readonly replies: { match: (argv: string[]) => boolean; stdout: string; exitCode?: number }[] = [],
  ) {}

  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    this.calls.push({ argv: [...argv], ...(options.input ? { input: options.input } : {}) });
    const reply = this.replies.find((r) => r.match([...argv]));
    return { stdout: reply?.stdout ?? '', stderr: '', exitCode: reply?.exitCode ?? 0 };
  }
}
