package unhidra

// Limits on stored strings, shared by validation in every layer.
const (
	MaxNameLen        = 64
	MaxDisplayNameLen = 128
)
