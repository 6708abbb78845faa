// Progress on a terminal (stderr), nothing elsewhere: a log or a pipe gets only the results.
// cli-progress is imported only when a bar is shown, so that it never loads otherwise.

interface Progress {
  update(done: number): void
  stop(): void
}

const NO_PROGRESS: Progress = { update: () => {}, stop: () => {} }

/** Whether progress is shown: stderr is a terminal and the user did not ask for quiet output. */
export const showProgress = (quiet: boolean | undefined): boolean => process.stderr.isTTY === true && !quiet

/** A bar of sequences done, sequences/s and time left. */
export async function progressBar(total: number, enabled: boolean): Promise<Progress> {
  if (!enabled) return NO_PROGRESS
  const { default: cliProgress } = await import('cli-progress')
  const bar = new cliProgress.SingleBar(
    {
      format: 'scoring {bar} {percentage}% | {value}/{total} sequences | {rate} seq/s | ETA {eta_formatted}',
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  )
  const started = performance.now()
  bar.start(total, 0, { rate: '-' })
  return {
    update(done) {
      const seconds = (performance.now() - started) / 1000
      bar.update(done, { rate: seconds > 0 ? Math.round(done / seconds).toLocaleString('en-US') : '-' })
    },
    stop: () => bar.stop(),
  }
}

/** One line of status on stderr, rewritten in place, cleared at the end. */
export function statusLine(enabled: boolean): { show(text: string): void; clear(): void } {
  if (!enabled) return { show: () => {}, clear: () => {} }
  return {
    show: (text) => process.stderr.write(`\r\x1b[K${text}`),
    clear: () => process.stderr.write('\r\x1b[K'),
  }
}
