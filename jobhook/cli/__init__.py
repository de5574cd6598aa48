"""The `jobhook` command: the dev stack, the demo, and a user's and an operator's verbs."""
