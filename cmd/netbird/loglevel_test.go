package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serviceLineWait bounds the wait for a daemon log line (a failure
// deadline, not an expectation).
const serviceLineWait = 30 * time.Second

// TestServiceRunLogLevel runs `netbird service run` in this process, its
// log on a pipe, and changes its level with `netbird debug log level`: the
// change is logged at info while either level shows it, so the line for
// warn is hidden by error and the next one says it came from warn.
func TestServiceRunLogLevel(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	c := writeTestConfig(t, cfgPath, "http://127.0.0.1:1")
	c.DisableAutoConnect = true
	if err := c.Save(cfgPath); err != nil {
		t.Fatal(err)
	}
	addr := "unix://" + filepath.Join(dir, "netbird.sock")

	pr, pw := io.Pipe()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(pr)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	waitLine := func(want ...string) string {
		t.Helper()
		timer := time.NewTimer(serviceLineWait)
		defer timer.Stop()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("daemon log ended before a line with %q", want)
				}
				all := true
				for _, w := range want {
					all = all && strings.Contains(l, w)
				}
				if all {
					return l
				}
			case <-timer.C:
				t.Fatalf("no daemon log line with %q within %v", want, serviceLineWait)
			}
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		cmd := newRootCmd()
		cmd.SetOut(pw)
		cmd.SetErr(pw)
		cmd.SetArgs([]string{"service", "run", "--config", cfgPath, "--daemon-addr", addr, "--log-file", "console",
			"--log-level", "info"})
		done <- cmd.ExecuteContext(ctx)
		_ = pw.Close()
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service run: %v", err)
		}
		for range lines {
		}
	}()
	waitLine("serving the local API")

	cli := func(args ...string) (string, error) {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(args, "--daemon-addr", addr))
		err := cmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	for _, c := range []struct {
		level, out string
		line       []string // the next change line shown, or none
	}{
		{"error", "Log level set to error (was info)", []string{`"from": "info"`, `"to": "error"`}},
		{"warn", "Log level set to warn (was error)", nil},
		{"TRACE", "Log level set to debug (was warn)", []string{`"from": "warn"`, `"to": "debug"`}},
		{"info", "Log level set to info (was debug)", []string{`"from": "debug"`, `"to": "info"`}},
	} {
		out, err := cli("debug", "log", "level", c.level)
		if err != nil || !strings.Contains(out, c.out) {
			t.Fatalf("debug log level %s: %v\n%s", c.level, err, out)
		}
		if c.line != nil {
			waitLine(append([]string{"log level changed"}, c.line...)...)
		}
	}
	if out, err := cli("debug", "log", "level", "verbose"); err == nil || !strings.Contains(err.Error(), "unknown log level") {
		t.Fatalf("debug log level verbose: %v\n%s", err, out)
	}
}
