//go:build !race

package rowcache

const raceEnabled = false
