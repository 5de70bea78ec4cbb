"""`python -m nats_s3`: the same as the `nats-s3` command."""

from .cli import main

raise SystemExit(main())
