"""The dev stack: Supabase in miniature on this machine, for `jobhook dev`, `demo` and the tests.

A private PostgreSQL cluster (`cluster`), the platform pieces Supabase's image provides
(`platform`: roles, auth, Vault and pg_net stand-ins), the migration runner (`migrations`,
`database`), pg_net's delivery worker (`delivery`), local tokens (`tokens`) and the stack that
runs them with the app (`stack`). None of it ships to Modal; the runtime never imports it.
"""
