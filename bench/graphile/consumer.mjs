// graphile-worker's side of `jobhook bench`: one worker with the batching options its
// performance page recommends (worker.graphile.org/docs/performance), running a no-op task.
// Prints "ready", then, when REPORT_STARTS=1, "<job id> <monotonic nanoseconds>" as each job
// starts: process.hrtime reads CLOCK_MONOTONIC, the clock of Python's time.monotonic_ns() in the
// producer, to the nanosecond. Date.now() would be a millisecond floor, below the latencies
// measured, and performance.timeOrigin a wall time that NTP moves away from.
import { Logger, run } from "graphile-worker";

const quiet = new Logger(() => () => {});
const reportStarts = process.env.REPORT_STARTS === "1";

const runner = await run({
  logger: quiet,
  noHandleSignals: true,
  preset: {
    worker: {
      connectionString: process.env.DATABASE_URL,
      concurrentJobs: 24,
      maxPoolSize: 25,
      localQueue: { size: 500 },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
    },
  },
  taskList: {
    bench_noop: async (_payload, helpers) => {
      if (reportStarts) {
        process.stdout.write(`${helpers.job.id} ${process.hrtime.bigint()}\n`);
      }
    },
  },
});
process.stdout.write("ready\n");
process.on("SIGTERM", () => {
  runner.stop().then(() => process.exit(0));
});
await runner.promise;
