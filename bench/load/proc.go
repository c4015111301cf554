package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// procCPUTicks returns utime+stime of a process in clock ticks, from
// /proc/<pid>/stat.
func procCPUTicks(pid string) (int64, error) {
	ut, st, err := procUserSys(pid)
	return ut + st, err
}

// procUserSys returns utime and stime of a process in clock ticks.
func procUserSys(pid string) (int64, int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseStat(b)
}

func parseStatTicks(b []byte) (int64, error) {
	ut, st, err := parseStat(b)
	return ut + st, err
}

// parseStat reads utime and stime. The command name (field 2) may contain
// spaces and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (int64, int64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc stat")
	}
	// After ')': field 3 (state) is f[0], so utime (14) is f[11], stime (15) f[12].
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("malformed /proc stat: %d fields", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("malformed /proc stat utime/stime %q %q", f[11], f[12])
	}
	return ut, st, nil
}

// procSchedNanos is a process's CPU time from the scheduler (the sum of
// every thread's /proc/<pid>/task/<tid>/schedstat), exact where
// /proc/<pid>/stat counts 10 ms ticks.
func procSchedNanos(pid string) int64 {
	tasks, _ := filepath.Glob("/proc/" + pid + "/task/*/schedstat")
	var t int64
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		if fs := strings.Fields(string(b)); len(fs) > 0 {
			n, _ := strconv.ParseInt(fs[0], 10, 64)
			t += n
		}
	}
	return t
}

// procStatusKB returns a "Vm...:" field of /proc/<pid>/status in KiB.
func procStatusKB(pid, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	return parseStatusKB(b, field)
}

func parseStatusKB(b []byte, field string) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}

// resetPeakRSS resets VmHWM to the current RSS (Linux >= 4.0), so that a
// later VmHWM is the peak during the phase that follows.
func resetPeakRSS(pid string) error {
	return os.WriteFile("/proc/"+pid+"/clear_refs", []byte("5"), 0)
}
