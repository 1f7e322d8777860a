"""The application layer: one call per user action, plain data in and out (str, numbers, lists, dicts and frozen
dataclasses of them, which pickle), so that the page, the CLI, an API client and a ZeroGPU worker make the same
calls. It sits on the engine; the web UI reads the engine through it."""
