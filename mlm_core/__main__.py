"""`python -m mlm_core ...`: the headless CLI."""

from mlm_core.cli.commands import main

raise SystemExit(main())
