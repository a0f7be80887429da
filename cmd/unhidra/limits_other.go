//go:build !unix

package main

func defaultMaxConns() int { return 10_000 }

func defaultTCPLimits() (perAddr, total int) { return 1000, 10_000 }
