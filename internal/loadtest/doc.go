// Package loadtest holds the project's own load tools behind `unhidra
// bench`: opening many idle authenticated WebSocket connections from
// several loopback source addresses and reading what they cost the server,
// and the helpers they share (dialing, scraping the server's metrics,
// latency percentiles).
//
// Every tool is bounded in connection count and time and stops by itself.
package loadtest
