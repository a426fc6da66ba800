"""stream-sentinel: watch an LLM application's event stream for abuse."""

__version__ = "0.1.0"
