"""Message templates: the local copy of each WABA's templates, kept in sync with Meta."""
