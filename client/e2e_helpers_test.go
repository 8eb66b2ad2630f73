//go:build linux

package client_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment of the child processes of TestTUNNamespacesEngines: the role
// selects what the child runs (e2eRoleTestnet or e2eRoleClient).
const (
	e2eEnvRole     = "NBFSM_E2E_ROLE"
	e2eEnvHost     = "NBFSM_E2E_HOST"
	e2eEnvMgmt     = "NBFSM_E2E_MGMT_URL"
	e2eEnvSetupKey = "NBFSM_E2E_SETUP_KEY" // secret: never logged
	e2eEnvName     = "NBFSM_E2E_NAME"

	e2eRoleTestnet = "testnet"
	e2eRoleClient  = "client"

	// Marker lines a child prints on stdout for the parent.
	e2eMarkTestnet = "NBFSM-E2E-TESTNET" // <management URL> <setup key>
	e2eMarkPinged  = "NBFSM-E2E-PINGED"  // <connected after> <first reply after> <peer>
)

// Underlay (198.18.0.0/15) of the namespaces: the hub's bridge and the two
// clients' veth ends.
const (
	e2eHubAddr = "198.18.0.1"
	e2eAddrA   = "198.18.0.2"
	e2eAddrB   = "198.18.0.3"
	e2ePrefix  = "/24"
)

// e2eTopology is three network namespaces: a hub with a bridge and two
// client namespaces wired to it by veth pairs.
type e2eTopology struct {
	hub, a, b string
}

// newE2ETopology creates the namespaces and links; t.Cleanup deletes the
// namespaces even when the test fails half-way. Register it before
// starting any child, so that the children are stopped (their cleanups run
// first) before their namespaces go.
func newE2ETopology(t testing.TB) *e2eTopology {
	t.Helper()
	id := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	topo := &e2eTopology{hub: "nbfsm-hub-" + id, a: "nbfsm-a-" + id, b: "nbfsm-b-" + id}
	t.Cleanup(func() {
		for _, ns := range []string{topo.hub, topo.a, topo.b} {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Logf("ip netns del %s: %v: %s", ns, err, out)
			}
		}
	})
	steps := [][]string{
		{"netns", "add", topo.hub},
		{"netns", "add", topo.a},
		{"netns", "add", topo.b},
		{"-n", topo.hub, "link", "set", "lo", "up"},
		{"-n", topo.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", topo.hub, "addr", "add", e2eHubAddr + e2ePrefix, "dev", "br0"},
		{"-n", topo.hub, "link", "set", "br0", "up"},
	}
	// Interface names live in their own namespace, so they need no suffix
	// and stay far below the 15-character limit.
	for _, c := range []struct{ ns, hubEnd, addr string }{
		{topo.a, "veth-a", e2eAddrA},
		{topo.b, "veth-b", e2eAddrB},
	} {
		steps = append(steps,
			[]string{"-n", c.ns, "link", "set", "lo", "up"},
			[]string{"-n", c.ns, "link", "add", "eth0", "type", "veth", "peer", "name", c.hubEnd, "netns", topo.hub},
			[]string{"-n", topo.hub, "link", "set", c.hubEnd, "master", "br0"},
			[]string{"-n", topo.hub, "link", "set", c.hubEnd, "up"},
			[]string{"-n", c.ns, "addr", "add", c.addr + e2ePrefix, "dev", "eth0"},
			[]string{"-n", c.ns, "link", "set", "eth0", "up"},
		)
	}
	for _, args := range steps {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return topo
}

// e2eChild is this test binary re-executed under `ip netns exec` in one
// role. Its stdout and stderr are read by one goroutine: marker lines go to
// marks, every other line to out.
type e2eChild struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	marks chan string   // marker lines, in order
	eof   chan struct{} // closed when the child's output has ended

	mu  sync.Mutex
	out strings.Builder
}

func startE2EChild(t testing.TB, name, ns string, env map[string]string) *e2eChild {
	return startE2EChildProfiled(t, name, ns, "", env)
}

// startE2EChildProfiled is startE2EChild with the child writing a CPU
// profile of its whole life to cpuProfile (none if empty).
func startE2EChildProfiled(t testing.TB, name, ns, cpuProfile string, env map[string]string) *e2eChild {
	t.Helper()
	args := []string{"netns", "exec", ns, os.Args[0], "-test.run=^TestTUNEnginesChild$", "-test.v", "-test.count=1"}
	if cpuProfile != "" {
		args = append(args, "-test.cpuprofile="+cpuProfile)
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c := &e2eChild{name: name, cmd: cmd, marks: make(chan string, 4), eof: make(chan struct{})}
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, ns, err)
	}
	go c.read(stdout)
	t.Cleanup(func() { _ = c.stop(e2eStopWait) })
	return c
}

func (c *e2eChild) read(r io.Reader) {
	defer close(c.eof)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "NBFSM-E2E-") {
			select {
			case c.marks <- line:
			default: // nobody asked for more marks
			}
			continue
		}
		c.mu.Lock()
		c.out.WriteString(line + "\n")
		c.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r) // a line over the limit: keep the child unblocked
}

// output is what the child printed so far, marker lines left out.
func (c *e2eChild) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// mark waits for the child's next marker line with the given prefix; false
// when the child ends first or the deadline passes.
func (c *e2eChild) mark(prefix string, deadline time.Time) (string, bool) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case line := <-c.marks:
			if strings.HasPrefix(line, prefix+" ") {
				return strings.TrimPrefix(line, prefix+" "), true
			}
		case <-c.eof:
			select { // a mark printed just before the end
			case line := <-c.marks:
				if strings.HasPrefix(line, prefix+" ") {
					return strings.TrimPrefix(line, prefix+" "), true
				}
			default:
			}
			return "", false
		case <-timer.C:
			return "", false
		}
	}
}

// e2eStopWait bounds a child's orderly exit after its stdin closed: a
// failure deadline, then it is killed.
const e2eStopWait = 20 * time.Second

// stop closes the child's stdin (its cue to shut down), waits up to wait
// for it to exit, kills it after that, and returns its exit error.
// Idempotent.
func (c *e2eChild) stop(wait time.Duration) error {
	_ = c.stdin.Close()
	if c.cmd.ProcessState != nil {
		return exitErr(c.cmd)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-c.eof:
	case <-timer.C:
		_ = c.cmd.Process.Kill()
		<-c.eof
	}
	if err := c.cmd.Wait(); err != nil {
		return err
	}
	return nil
}

func exitErr(cmd *exec.Cmd) error {
	if cmd.ProcessState.Success() {
		return nil
	}
	return fmt.Errorf("%s", cmd.ProcessState)
}

// lockedBuffer collects a child's debug log, printed only on failure.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Sync() error { return nil }

// tail is the last n lines.
func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.SplitAfter(b.buf.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
