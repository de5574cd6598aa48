"""jobhook's benchmark against the Postgres job queues a user would pick instead (`jobhook bench`).

Not part of the installed package: it runs from a checkout, with the dev dependencies.
"""
