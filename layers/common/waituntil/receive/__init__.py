"""The receiver's rules: the bearer check, the webhook payload, the queued message. Imports
``core`` only, and nothing heavy: the receiver's cold start pays for every import here."""
