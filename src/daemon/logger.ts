/** Where the daemon's log lines go (stderr in production, a buffer in tests). */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** A logger writing `stopd: <level>: <message>` lines to a stream. */
export function createStreamLogger(stream: { write(text: string): unknown }): Logger {
  const write = (level: string, message: string): void => {
    stream.write(`stopd: ${level}: ${message}\n`);
  };
  return {
    info: (message) => write('info', message),
    warn: (message) => write('warning', message),
    error: (message) => write('error', message),
  };
}
