// Typed supabase-js helpers for jobhook: submit a job, watch it to its end, cancel it.
//
// Types come from `jobhook types ts`, which writes each job type's parameters and result:
//
//   import type { JobTypes } from './jobhook-types'
//   const job = await watch<JobTypes>(supabase, { job_type: 'sample_task', payload: { steps: 5 } })
//
// `watch` subscribes before it inserts, and treats Realtime's messages as hints: a short job can
// finish before a subscription made after its insert is live, and Realtime drops messages over
// its rate or size limits. So it also reads the row once the subscription is live, after every
// reconnect and at a slow interval, and resolves when the row's status is final.

import type { RealtimePostgresChangesPayload, SupabaseClient } from '@supabase/supabase-js'

/** What `jobhook types ts` generates as `JobTypes`: each job type's parameters and result. */
export type JobTypeMap = { [jobType: string]: { params: unknown; result: unknown } }

export type JobStatus = 'pending' | 'processing' | 'completed' | 'failed' | 'cancelled'
export const FINAL_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'cancelled']

/** jobhook.failure_kind: why an attempt did not complete. */
export type FailureKind =
  | 'error'
  | 'timeout'
  | 'invalid_parameters'
  | 'invalid_payload'
  | 'unknown_job_type'
  | 'bad_result'
  | 'released'
  | 'lease_expired'
  | 'undelivered'
  | 'not_started'
  | 'invalid_run_at'

/** One entry of `errors`: an attempt that did not complete. */
export type JobErrorEntry = { attempt: number; at: string; message: string; kind: FailureKind }

type Columns = {
  id: string
  user_id: string | null
  status: JobStatus
  progress: number
  progress_message: string | null
  error: string | null
  errors: JobErrorEntry[]
  attempt: number
  max_attempts: number
  run_at: string
  idempotency_key: string | null
  cancel_requested_at: string | null
  created_at: string
  updated_at: string
  started_at: string | null
  finished_at: string | null
  dispatch_count: number
  dispatched_at: string | null
  lease_expires_at: string | null
  worker_id: string | null
}

type Name<Types extends JobTypeMap> = keyof Types & string

/** A row of public.jobs; narrow it by `job_type` to type its payload and result. */
export type Job<Types extends JobTypeMap, T extends Name<Types> = Name<Types>> = {
  [K in T]: Columns & {
    job_type: K
    payload: Types[K]['params']
    result: Types[K]['result'] | null
  }
}[T]

/** A new job: what a client may insert (the owner comes from its token). */
export type NewJob<Types extends JobTypeMap, T extends Name<Types> = Name<Types>> = {
  [K in T]: {
    job_type: K
    payload?: Types[K]['params']
    /** do not start before this time */
    run_at?: string | Date
    /** a retried submit with the same key conflicts instead of making a second job */
    idempotency_key?: string
  }
}[T]

/** An error from the database or the API, with PostgREST's code, details and hint. */
export class JobhookError extends Error {
  readonly code: string | null
  readonly details: string | null
  readonly hint: string | null

  constructor(message: string, code?: string | null, details?: string | null, hint?: string | null) {
    super(message)
    this.name = 'JobhookError'
    this.code = code ?? null
    this.details = details ?? null
    this.hint = hint ?? null
  }
}

type PostgrestErrorLike = { message: string; code?: string; details?: string | null; hint?: string | null }

// PostgreSQL checks column privileges before any of jobhook's code runs, so its message cannot
// say which column was refused; this is what it means on public.jobs.
const COLUMN_REFUSED =
  'a client may write only job_type, payload, run_at and idempotency_key (and cancel_requested_at ' +
  'to cancel); user_id is set from your token: leave it out'

function failure(error: PostgrestErrorLike): JobhookError {
  const hint = error.code === '42501' ? (error.hint ?? COLUMN_REFUSED) : (error.hint ?? null)
  const message = error.code === '42501' ? `${error.message}: ${COLUMN_REFUSED}` : error.message
  return new JobhookError(message, error.code ?? null, error.details ?? null, hint)
}

// The helpers take any supabase-js client, typed with `Database` from `jobhook types ts` or not.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Client = SupabaseClient<any, any, any>

/** Insert a job; resolves with its row, or rejects with the database's reason. */
export async function submit<Types extends JobTypeMap, T extends Name<Types> = Name<Types>>(
  supabase: Client,
  job: NewJob<Types, T>,
): Promise<Job<Types, T>> {
  const row: Record<string, unknown> = { job_type: job.job_type, payload: job.payload ?? {} }
  if (job.run_at !== undefined) {
    row.run_at = job.run_at instanceof Date ? job.run_at.toISOString() : job.run_at
  }
  if (job.idempotency_key !== undefined) row.idempotency_key = job.idempotency_key
  const { data, error } = await supabase.from('jobs').insert(row).select().single()
  if (error) throw failure(error)
  return data as Job<Types, T>
}

/** Ask to cancel: a pending job is cancelled at once, a running one at its next heartbeat.
 * False when there was nothing to cancel (the job is finished, or not yours). */
export async function cancel(supabase: Client, id: string): Promise<boolean> {
  const { data, error } = await supabase
    .from('jobs')
    .update({ cancel_requested_at: new Date().toISOString() })
    .eq('id', id)
    .select('id')
  if (error) throw failure(error)
  return (data ?? []).length > 0
}

export type WatchOptions<Types extends JobTypeMap, T extends Name<Types>> = {
  /** called with the row each time it changes (progress, retries), and with the final row */
  onChange?: (job: Job<Types, T>) => void
  /** how often the row is read besides Realtime's messages (default 15 s) */
  pollMs?: number
  /** how long to wait for the subscription before inserting anyway (default 10 s) */
  subscribeTimeoutMs?: number
  /** stop watching; the promise rejects with the signal's reason (the job goes on) */
  signal?: AbortSignal
}

/** Submit a job (or follow an existing one, `{ id }`) and resolve with its row once its status
 * is final: completed, failed or cancelled. */
export function watch<Types extends JobTypeMap, T extends Name<Types> = Name<Types>>(
  supabase: Client,
  job: NewJob<Types, T> | { id: string },
  options: WatchOptions<Types, T> = {},
): Promise<Job<Types, T>> {
  const { onChange, pollMs = 15_000, subscribeTimeoutMs = 10_000, signal } = options
  return new Promise<Job<Types, T>>((resolve, reject) => {
    let id: string | null = 'id' in job ? job.id : null
    let latest: Job<Types, T> | null = null
    let done = false
    let started = false
    let rejoinedDuringInsert = false
    let poller: ReturnType<typeof setInterval> | undefined
    const early: Record<string, unknown>[] = []  // rows that arrive before the insert returns
    const channel = supabase.channel(`jobhook-watch-${crypto.randomUUID()}`)

    const finish = (error?: unknown): void => {
      if (done) return
      done = true
      clearInterval(poller)
      clearTimeout(fallback)
      signal?.removeEventListener('abort', aborted)
      void supabase.removeChannel(channel)
      if (error !== undefined) reject(error)
      else resolve(latest as Job<Types, T>)
    }
    const aborted = (): void => finish(signal?.reason ?? new Error('aborted'))

    const take = (row: Record<string, unknown>): void => {
      if (done || row.id !== id) return
      if (latest !== null) {
        // A read can answer after a newer message arrived: keep the newer row.
        if (stamp(row.updated_at) < stamp(latest.updated_at)) return
      }
      // An UPDATE message leaves out large values it did not change (payload): keep ours.
      latest = { ...(latest ?? {}), ...row } as Job<Types, T>
      onChange?.(latest)
      if (FINAL_STATUSES.includes(latest.status)) finish()
    }

    const read = async (): Promise<void> => {
      if (done || id === null) return
      const { data, error } = await supabase.from('jobs').select().eq('id', id).maybeSingle()
      if (done) return
      if (error) return  // the next read, or a message, will tell
      if (data === null) finish(new JobhookError(`job ${id} not found (or not yours)`, 'not_found'))
      else take(data as Record<string, unknown>)
    }

    const changed = (message: RealtimePostgresChangesPayload<Record<string, unknown>>): void => {
      if (message.errors?.length) {
        void read()  // e.g. "Error 413: Payload Too Large": the record was not sent, the row is there
        return
      }
      if (id === null) early.push(message.new)
      else take(message.new)
    }

    const start = async (): Promise<void> => {
      if (started || done) return
      started = true
      clearTimeout(fallback)
      try {
        if (id === null) {
          const row = await submit<Types, T>(supabase, job as NewJob<Types, T>)
          id = row.id
          take(row as Record<string, unknown>)
          for (const row of early.splice(0)) take(row)
          // The connection dropped and came back while the insert was on its way: what was
          // sent in between is lost, and only the row can tell.
          if (rejoinedDuringInsert) await read()
        } else {
          await read()
        }
      } catch (error) {
        finish(error)
        return
      }
      if (!done) poller = setInterval(() => void read(), pollMs)
    }

    if (signal?.aborted) {
      finish(signal.reason ?? new Error('aborted'))
      return
    }
    signal?.addEventListener('abort', aborted)
    const filter = id === null ? {} : { filter: `id=eq.${id}` }
    for (const event of ['INSERT', 'UPDATE'] as const) {
      channel.on('postgres_changes', { event, schema: 'public', table: 'jobs', ...filter }, changed)
    }
    // Without a live subscription the reads still follow the job: start anyway, a little later.
    const fallback = setTimeout(() => void start(), subscribeTimeoutMs)
    // supabase-js hands Realtime the user's token asynchronously (at once when the client has an
    // `accessToken` callback, at sign-in otherwise): a channel joined before that joins with the
    // anon key, and row-level security then sends it none of the user's rows. So the token
    // goes first.
    void Promise.resolve()
      .then(() => supabase.realtime.setAuth())
      .catch(() => undefined)  // the reads will still follow the job
      .then(() => {
        if (done) return
        channel.subscribe((status) => {
          if (status !== 'SUBSCRIBED') return
          if (!started) void start()
          else if (id === null) rejoinedDuringInsert = true
          else void read()  // a reconnect: what was sent meanwhile is lost, the row is not
        })
      })
  })
}

/** Microseconds since 1970 of a timestamp as PostgREST ("2026-12-03T08:55:06.123456+00:00") or
 * Realtime ("2026-12-03 08:55:06.123456+00") write it; Date.parse keeps milliseconds only. */
export function stamp(value: unknown): number {
  const parts = /^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(Z|[+-]\d\d(?::?\d\d)?)?$/.exec(
    String(value),
  )
  if (parts === null) return Number.NEGATIVE_INFINITY
  const [, day, time, fraction = '', zone = 'Z'] = parts
  const offset = zone === 'Z' ? 'Z' : zone.length === 3 ? `${zone}:00` : zone.replace(/(\d\d)(\d\d)$/, '$1:$2')
  const seconds = Date.parse(`${day}T${time}${offset}`)
  return seconds * 1000 + Number(fraction.padEnd(6, '0'))
}
