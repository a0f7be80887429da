// Package sqldb implements the store interfaces once, in SQL that SQLite and
// PostgreSQL both understand, over database/sql.
//
// The two databases differ in a handful of places only: placeholders, the
// error codes of constraint violations, migration SQL, connection set-up and
// how migrations are serialised between nodes. Those differences are a
// Dialect, supplied by store/sqlite and store/postgres; everything else
// (queries, transactions, the behaviour the storetest suite checks) is here,
// written once.
package sqldb
