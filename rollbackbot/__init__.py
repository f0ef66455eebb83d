"""rollbackbot: a GitOps circuit breaker for production ML/AI models."""

__version__ = "0.1.0"
