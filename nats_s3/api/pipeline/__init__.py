"""The S3 front door as a chain of steps, one concern each (see exchange.py for how they link).

Order: observe (request id, timing, metrics, access log) → errors (S3 XML for every failure) →
addressing (bucket and key) → authentication (signed or anonymous) → CORS → routing (which operation)
→ authorization (who may) → dispatch (the handler). A new cross-cutting concern (quotas, encryption)
is one more step in gateway.py's list.
"""
