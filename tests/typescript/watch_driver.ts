// Run by tests/test_typescript_watch.py with node: the helper's watch, through the real
// supabase-js, against the loopback Supabase the test serves. Prints one JSON line per change
// and one for the end.
//
//   node watch_driver.js <supabase url> <anon key> <access token> <new job as JSON> <poll ms>

import { createClient } from '@supabase/supabase-js'
import { watch, type JobTypeMap } from './jobs.js'

type SampleTypes = JobTypeMap & {
  sample_task: { params: { steps?: number; step_seconds?: number }; result: { steps: number } }
}

const [url = '', anonKey = '', token = '', job = '{}', pollMs = '15000'] = process.argv.slice(2)
const supabase = createClient(url, anonKey, {
  accessToken: async () => token,
  realtime: { reconnectAfterMs: () => 200 },
})
const print = (line: object): void => {
  process.stdout.write(JSON.stringify(line) + '\n')
}

try {
  const done = await watch<SampleTypes, 'sample_task'>(supabase, JSON.parse(job), {
    pollMs: Number(pollMs),
    onChange: (row) => print({ change: row.status, progress: row.progress }),
  })
  print({ done })
  process.exit(0)
} catch (error) {
  print({ error: String(error) })
  process.exit(1)
}
