"""MLM Studio's web UI (Gradio): one module per tab, the page's text and figures, and who may do what."""
