"""`python -m mlm_core ...`: the headless CLI."""

from .cli import main

raise SystemExit(main())
