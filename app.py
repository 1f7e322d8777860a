"""MLM Studio: fine-tune a language model on your own text, watch it learn, then play with it.

This file only starts the app; the page is built by the `studio` package and all ML lives in `mlm_core`.
"""

import sys


def main() -> None:
    """Build the page and serve it (`python app.py`); a setting that cannot work is one line and exit code 2."""
    from mlm_core.system.environment import withdraw_server_token

    try:
        server_token = withdraw_server_token()  # first: huggingface_hub must never see it in a public Space
        from studio.page import serve

        serve(server_token)
    except ValueError as error:  # a setting that is not of its kind, a runs folder that cannot hold runs
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
