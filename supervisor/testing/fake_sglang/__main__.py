"""`python -m supervisor.testing.fake_sglang [SGLang flags] [--fake-* flags]`."""

from __future__ import annotations

from ._cli import main

if __name__ == "__main__":
    main()
