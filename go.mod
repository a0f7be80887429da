module github.com/unhidra/unhidra

go 1.26.8

require (
	github.com/coder/websocket v1.8.15
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.49.0
)
