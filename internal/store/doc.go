// Package store is Unhidra's persistence boundary: the storage interfaces
// the services depend on and the query and batch types they take. The
// entities themselves are the root package's (unhidra.User, unhidra.Message…).
//
// It imports no implementation. The SQL implementation shared by SQLite and
// PostgreSQL lives in store/sqldb, with the driver-specific parts in
// store/sqlite and store/postgres; store/storetest is the behaviour suite both
// must pass.
package store
