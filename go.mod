module github.com/unhidra/unhidra

go 1.26.8
