package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// deadline bounds every wait: a failure deadline, never an expectation.
const deadline = 30 * time.Second

// runTestnet runs `netbird testnet args...` in-process and returns the
// printed fields once the network is up, and the command's result channel.
func runTestnet(ctx context.Context, t *testing.T, args ...string) (map[string]string, <-chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	root := newRootCmd()
	root.SetArgs(append([]string{"testnet", "--log-level", "warn"}, args...))
	root.SetOut(pw)
	root.SetErr(io.Discard)
	done := make(chan error, 1)
	go func() {
		err := root.ExecuteContext(ctx)
		_ = pw.CloseWithError(io.EOF)
		done <- err
	}()
	fields := map[string]string{}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "serving until interrupted") {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("unexpected output line %q", line)
		}
		fields[k] = strings.TrimSpace(v)
	}
	// Keep draining so the command never blocks on its output.
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if len(fields) == 0 {
		t.Fatalf("no output; command ended with %v", <-done)
	}
	return fields, done
}

func checkServing(ctx context.Context, t *testing.T, fields map[string]string) {
	t.Helper()
	url, key := fields["management URL"], fields["setup key"]
	if !strings.HasPrefix(url, "http://127.0.0.1:") || len(key) != 36 {
		t.Fatalf("printed URL %q key %q", url, key)
	}
	for _, k := range []string{"signal", "stun", "turn"} {
		if !strings.Contains(fields[k], "127.0.0.1:") {
			t.Fatalf("printed %s = %q", k, fields[k])
		}
	}
	cc, err := grpc.NewClient(strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := mgmtpb.NewManagementServiceClient(cc).IsHealthy(ctx, &mgmtpb.Empty{}); err != nil {
		t.Fatalf("isHealthy on the printed URL: %v", err)
	}
}

func waitDone(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("testnet ended with %v, want a clean exit", err)
		}
	case <-time.After(deadline):
		t.Fatal("testnet did not stop")
	}
}

func TestTestnetStopsOnSIGINT(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	fields, done := runTestnet(ctx, t)
	checkServing(ctx, t, fields)
	// The command catches SIGINT before it prints, so this reaches it and
	// not the test binary's default handler.
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitDone(t, done)
}

func TestTestnetStopsOnContextAndTakesFlags(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	fields, done := runTestnet(runCtx, t, "--setup-key", "A2C8E62B-38F5-4553-B31E-DD66C696CEBB")
	if got := fields["setup key"]; got != "A2C8E62B-38F5-4553-B31E-DD66C696CEBB" {
		t.Fatalf("setup key = %q", got)
	}
	checkServing(ctx, t, fields)
	stop()
	waitDone(t, done)
}

func TestTestnetBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"bad port", []string{"testnet", "--management-port", "70000"}},
		{"bad log level", []string{"testnet", "--log-level", "loud"}},
		{"extra argument", []string{"testnet", "now"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			root.SetArgs(tt.args)
			root.SetOut(io.Discard)
			root.SetErr(io.Discard)
			if err := root.ExecuteContext(context.Background()); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// TestTestnetHelpCommandsExist: every `netbird …` line of testnet's help
// names a real command and real flags.
func TestTestnetHelpCommandsExist(t *testing.T) {
	root := newRootCmd()
	long := newTestnetCmd().Long
	checked := 0
	for _, line := range strings.Split(strings.ReplaceAll(long, "\\\n", " "), "\n") {
		i := strings.Index(line, "netbird ")
		if i < 0 || strings.Contains(line, "netbird testnet") {
			continue
		}
		words := strings.Fields(strings.TrimSuffix(line[i+len("netbird "):], "&"))
		var path []string
		for _, w := range words {
			if strings.HasPrefix(w, "-") {
				break
			}
			path = append(path, w)
		}
		cmd, rest, err := root.Find(path)
		if err != nil || len(rest) > 0 {
			t.Fatalf("help names `netbird %s`: no such command (%v)", strings.Join(path, " "), err)
		}
		for _, w := range words[len(path):] {
			if !strings.HasPrefix(w, "-") {
				continue
			}
			name := strings.TrimLeft(strings.SplitN(w, "=", 2)[0], "-")
			var found bool
			if strings.HasPrefix(w, "--") {
				found = cmd.Flags().Lookup(name) != nil || cmd.InheritedFlags().Lookup(name) != nil
			} else {
				found = cmd.Flags().ShorthandLookup(name) != nil || cmd.InheritedFlags().ShorthandLookup(name) != nil
			}
			if !found {
				t.Fatalf("help uses %s with `netbird %s`: no such flag", w, strings.Join(path, " "))
			}
		}
		checked++
	}
	if checked < 3 {
		t.Fatalf("help names %d netbird commands, want the up/service/status lines:\n%s", checked, long)
	}
}
