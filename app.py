"""MLM Studio: fine-tune a language model on your own text, watch it learn, then play with it.

This file only starts the app; the page is built by the `studio` package and all ML lives in `mlm_core`.
"""


def main() -> None:
    """Build the page and serve it (`python app.py`)."""
    from studio.environment import withdraw_server_token

    server_token = withdraw_server_token()  # first: huggingface_hub must never see it in a public Space
    from studio.page import serve

    serve(server_token)


if __name__ == "__main__":
    main()
