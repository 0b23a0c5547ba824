//go:build race

package proc

// raceEnabled: allocation counts are meaningless under the race detector
// (it allocates, and sync.Pool drops items on purpose).
const raceEnabled = true
