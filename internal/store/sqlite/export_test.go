package sqlite

// SchemaVersion is the schema version Open migrates to, for tests.
func SchemaVersion() int { return len(migrations) }
