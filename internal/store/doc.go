// Package store is Unhidra's domain vocabulary: the entities (users, tokens,
// audit events, and later channels, messages and devices), the storage
// interfaces the rest of the server depends on, and the one application error
// type every layer speaks.
//
// It imports no implementation. The SQL implementation shared by SQLite and
// PostgreSQL lives in store/sqldb, with the driver-specific parts in
// store/sqlite and store/postgres; store/storetest is the behaviour suite both
// must pass.
package store
