// Package mlbridge runs Unhidra's ML workers and calls them.
//
// A Supervisor starts N worker processes, by default python3 running the
// embedded SDK (package python) with the built-in models, or any command
// line that speaks the seed's protocol. Each worker listens on its own Unix
// socket inside a private 0700 directory. The supervisor waits until each
// one answers a health check, checks them periodically, restarts crashed or
// unhealthy ones with exponential backoff, and stops them with SIGTERM then
// SIGKILL. Workers die with the server even when it is SIGKILLed (Pdeathsig;
// the SDK also watches its stdin pipe), and the private directories of dead
// runs are removed at the next start.
//
// The protocol (docs/ml.md, unchanged from the seed worker): a frame is a 4-byte big-endian length
// then UTF-8 JSON. Requests are {"data", "request_id", "model_id"?},
// responses {"result", "request_id", "processing_time_ms"?, "error"?}.
// data == "health_check" is a health check (healthy when result contains
// "ok"); data == "list_models" with no model_id lists the models (an Unhidra
// extension). Structured models carry their JSON input and output as a JSON
// string inside data and result.
//
// Calls go over a pool of connections, several per worker, one request in
// flight on each; a call takes the least-loaded ready worker. When all are
// busy, callers wait in a bounded queue and beyond it get ErrSaturated. A
// connection that times out or sees anything unexpected is closed, never
// reused, so replies cannot get out of step. A call in flight on a crashed
// worker fails at once with ErrWorkerCrashed, or is retried once on another
// worker when its model is idempotent.
package mlbridge
