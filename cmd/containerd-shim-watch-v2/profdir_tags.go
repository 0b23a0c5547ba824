//go:build memprof || cpuprof

package main

import (
	"os"
	"sync"
)

// profileDir is this shim's private profile directory, made once for the
// memprof and cpuprof builds alike, under $TMPDIR (else /tmp).
var profileDir = sync.OnceValues(func() (string, error) {
	return newProfileDir(os.TempDir(), os.Getpid())
})
