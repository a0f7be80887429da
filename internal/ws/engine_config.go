package ws

// Config returns the Engine's configuration with every default filled in,
// so callers can tell clients the limits and timers in effect.
func (e *Engine) Config() Config { return e.cfg }
