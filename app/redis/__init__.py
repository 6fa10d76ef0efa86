"""Everything the store keeps in Redis: the client and its breaker, sessions, catalogue pages,
the login throttle, and the one place where replies sent early are read late."""
