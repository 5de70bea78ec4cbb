"""Server-side encryption of object bytes: chunk ciphers, data-key envelopes, master keys (pure: no NATS, no HTTP)."""
