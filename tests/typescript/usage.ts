// Compiled with `tsc --strict` by tests/test_typescript.py against the types `jobhook types ts`
// generates for this repository's handlers, the helper in clients/typescript and the real
// @supabase/supabase-js. Each @ts-expect-error is a mistake the types must catch: tsc fails
// if the line below it compiles.

import { createClient } from '@supabase/supabase-js'
import { cancel, submit, watch, type Job } from 'jobhook-client'
import type { Database, JobInsert, JobRow, JobTypes, SampleTaskParams } from './jobhook-types'

const supabase = createClient<Database>('http://127.0.0.1:54321', 'anon-key')

export async function typedTable(): Promise<number> {
  const { data, error } = await supabase
    .from('jobs')
    .insert({ job_type: 'sample_task', payload: { steps: 3, step_seconds: 0.1 } })
    .select()
    .single()
  if (error) throw error
  const row: JobRow = data
  if (row.job_type === 'sample_task') {
    const steps: number | undefined = row.payload.steps
    return steps ?? 0
  }
  // @ts-expect-error user_id comes from the token: a client may not insert it
  await supabase.from('jobs').insert({ job_type: 'sample_task', user_id: row.id })
  // @ts-expect-error status is the runner's to write
  await supabase.from('jobs').update({ status: 'completed' }).eq('id', row.id)
  await supabase.from('jobs').update({ cancel_requested_at: new Date().toISOString() }).eq('id', row.id)
  return row.progress
}

export const wrongParameter: JobInsert = {
  job_type: 'sample_task',
  // @ts-expect-error steps is a number
  payload: { steps: 'three' },
}

// @ts-expect-error no such job type
export const unknownType: JobInsert = { job_type: 'resize_imgae' }

export async function helper(): Promise<void> {
  const created = await submit<JobTypes>(supabase, { job_type: 'sample_task', payload: { steps: 2 } })
  const done = await watch<JobTypes, 'sample_task'>(
    supabase,
    { id: created.id },
    { onChange: (job) => console.log(job.status, job.progress, job.progress_message), pollMs: 5_000 },
  )
  const params: SampleTaskParams = done.payload
  console.log(params.steps, done.result?.steps, done.status === 'completed')
  await watch<JobTypes>(supabase, { job_type: 'classify_document', payload: { url: 'https://example.com' } })
  // @ts-expect-error classify_document has no `steps`
  await watch<JobTypes>(supabase, { job_type: 'classify_document', payload: { steps: 1 } })
  // @ts-expect-error the helper's NewJob has no user_id either
  await submit<JobTypes>(supabase, { job_type: 'sample_task', user_id: 'someone' })
  const cancelled: boolean = await cancel(supabase, created.id)
  console.log(cancelled)
}

// The generated row and the helper's row are the same type, both ways.
export const sameRow = (row: JobRow): Job<JobTypes> => row
export const sameJob = (job: Job<JobTypes>): JobRow => job
