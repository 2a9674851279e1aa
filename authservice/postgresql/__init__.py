"""Django's PostgreSQL backend, with a circuit breaker (pybreaker) on taking a connection."""
