/**
 * The analysis worker thread (started by analysis-worker.ts): it owns a socket table, the
 * persistent descriptor index and its kept files, and runs each SV/SV_REC/ID_REC analysis
 * (host view refresh, closure, record, canonical JSON, hash) off the daemon's event loop.
 * One message in, one message out; the main thread sends one analysis at a time.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { StopdError } from '../errors.js';
import { createLinuxHostView } from '../host/linux-host.js';
import { createLinuxSocketTable } from '../host/linux-sockets.js';
import { createPersistentFdIndex, describeRunTrackerOff, type PersistentFdIndex } from '../host/persistent-fd-index.js';
import { AccountDirectory } from '../host/users.js';
import { captureConnections, prepareEvidence, summariseClosure, type AnalysisContext } from './evidence-collector.js';
import type { AnalysisReply, AnalysisRequest, AnalysisThreadData } from './analysis-worker.js';

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function startThread(port: MessagePort, data: AnalysisThreadData): void {
  const log = (level: 'warn' | 'error', message: string): void => port.postMessage({ kind: 'log', level, message } satisfies AnalysisReply);
  const sockets = createLinuxSocketTable({ log: (message) => log('warn', message) });
  // The index lives where the analyses run: its refreshes and holder questions are the
  // analyses' own work, and its kept files are closed with it when this thread ends.
  let fdIndex: PersistentFdIndex | undefined;
  if (data.keepFdIndex) {
    try {
      fdIndex = createPersistentFdIndex({ skipSelf: true, separateTable: false, runTracker: data.runTracker });
      if (data.runTracker && !fdIndex?.runTracker.active) log('warn', describeRunTrackerOff(fdIndex?.runTracker.why));
    } catch (error) {
      log('warn', `${describe(error)}: each SV analysis scans every process instead`);
    }
  }
  const context: AnalysisContext = {
    hostView: (save) =>
      createLinuxHostView(sockets, {
        readCmdline: save.includes('cmdline'),
        onDenied: data.onDenied,
        hideSelf: true,
        ...(fdIndex === undefined ? {} : { fdIndex }),
      }),
    accounts: new AccountDirectory(),
    tokenHash: data.tokenHash,
    ...(data.utmpPath === undefined ? {} : { utmpPath: data.utmpPath }),
  };
  // Test-only (test/analysis-worker.test.ts): an analysis of a connection to this remote port
  // makes the thread fail as an uncaught bug would, so that the restart path can be exercised
  // with a real daemon. Read from the environment of the daemon, which only root controls.
  const crashPort = Number(process.env.STOPD_TEST_CRASH_ANALYSIS_PORT ?? 0);

  port.on('message', (message: AnalysisRequest) => {
    if (message.kind === 'close') {
      fdIndex?.close();
      port.close();
      return;
    }
    if (message.kind !== 'capture' && crashPort > 0 && message.socket.remote.port === crashPort) {
      throw new Error(`test crash of the analysis thread (STOPD_TEST_CRASH_ANALYSIS_PORT=${crashPort})`);
    }
    let reply: AnalysisReply;
    try {
      if (message.kind === 'prepare') {
        const prepared = prepareEvidence(context, message.socket, { request: message.request, save: message.save });
        // Hand the bytes over without copying when they own their memory (large records);
        // small Buffers share a pool, so they are copied once into memory of their own.
        const owned =
          prepared.bytes.byteOffset === 0 && prepared.bytes.byteLength === prepared.bytes.buffer.byteLength
            ? prepared.bytes
            : new Uint8Array(prepared.bytes);
        reply = { kind: 'done', id: message.id, result: { ...prepared, bytes: owned } };
        port.postMessage(reply, [owned.buffer as ArrayBuffer]);
        return;
      }
      reply =
        message.kind === 'capture'
          ? { kind: 'done', id: message.id, result: captureConnections(context, message.requests, message.save) }
          : { kind: 'done', id: message.id, result: summariseClosure(context, message.socket, message.save) };
    } catch (error) {
      reply = {
        kind: 'failed',
        id: message.id,
        error: {
          message: describe(error),
          name: error instanceof Error ? error.name : 'Error',
          ...(error instanceof StopdError ? { code: error.code } : {}),
        },
      };
    }
    port.postMessage(reply);
  });
}

if (parentPort !== null) startThread(parentPort, workerData as AnalysisThreadData);
