package scenario

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	nbclient "github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/internal/wgiface"
)

// S6 per process. getrusage counts a whole process, and S6's first row
// holds two clients and the test servers in one. So S6 also runs each
// client in a process of its own (this binary again: `bench --scenario S6`
// with S6ClientEnv set, or a test binary whose TestMain calls
// RunS6Client), the servers staying in this one: each client measures
// itself (getrusage(RUSAGE_SELF) over its window, as the whole-process
// row does) and reports its row as JSON; this process reports the
// servers' (and the harness's) share over the same length of time.

// S6ClientEnv, when set in the environment, makes S6 the client role of
// the per-process run; its value is an s6Client (JSON).
const S6ClientEnv = "NBFSM_BENCH_S6_CLIENT"

// s6Client is what the parent tells a client process.
type s6Client struct {
	Name       string        `json:"name"`
	Management string        `json:"management"`
	SetupKey   string        `json:"setup_key"` // secret: passed in the environment, never logged
	Window     time.Duration `json:"window"`
	// CPUProfile and Trace are the client's own profile prefixes (the
	// parent's --cpuprofile and --trace with "-" and the name appended).
	CPUProfile string `json:"cpuprofile,omitempty"`
	Trace      string `json:"trace,omitempty"`
}

// s6Marker is the progress line a client process prints when its window
// starts.
const s6Marker = "window starts"

// runS6All is S6: the whole-process row, then the per-process rows; in a
// client process, only that client's row.
func runS6All(ctx context.Context, b *bench, r *Result) error {
	if v := os.Getenv(S6ClientEnv); v != "" {
		return runS6Client(ctx, b, r, v)
	}
	if err := runS6(ctx, b, r); err != nil {
		return err
	}
	return runS6Split(ctx, b, r)
}

// RunS6Client runs the client role of S6's per-process run (for a test
// binary's TestMain, which cannot run `netbird bench`) and writes the
// report as JSON to out, as `netbird bench --json` does.
func RunS6Client(ctx context.Context, out, progress io.Writer) error {
	rep, err := Bench(ctx, BenchOptions{Scenarios: []string{"S6"}, Progress: progress})
	if rep != nil {
		if jerr := rep.WriteJSON(out); jerr != nil {
			return errors.Join(err, jerr)
		}
	}
	return err
}

func runS6Client(ctx context.Context, b *bench, r *Result, spec string) error {
	var c s6Client
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		return fmt.Errorf("%s: %w", S6ClientEnv, err)
	}
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		return err
	}
	changes := fsmwatch.NewChanges()
	cl, err := nbclient.New(nbclient.Options{ManagementURL: c.Management, PrivateKey: key, SetupKey: c.SetupKey,
		Meta: mgmt.Meta{Hostname: c.Name, GoOS: "linux"}, Mode: wgiface.Netstack,
		Listen: mustLoopback(), Logger: countingLogger(), Observers: []fsm.Observer{changes}, MeasureDispatch: true})
	if err != nil {
		return err
	}
	if err := cl.Start(ctx); err != nil {
		_ = cl.Close()
		return err
	}
	m := &member{c: cl, key: key, changes: changes, name: c.Name}
	defer m.close()
	if err := wait(ctx, m, 2*joinTimeout, "peer connected directly", func(s engine.Status) bool { return directCount(s) == 1 }); err != nil {
		return err
	}
	if c.CPUProfile != "" || c.Trace != "" {
		winProf = &windowProfile{prefix: c.CPUProfile, trace: c.Trace}
	}
	settle()
	b.progress("S6 client %s: %s (%v)", c.Name, s6Marker, c.Window)
	row, err := observe(ctx, c.Window, nil, []*member{m}, "client process "+c.Name, 1)
	if err != nil {
		return err
	}
	row.Label = fmt.Sprintf("client process %s, %v", c.Name, c.Window)
	if v, ok := row.Get("loop events"); ok {
		row.add("loop wake-ups per peer", v, "/min")
	}
	s, err := cl.Status()
	if err != nil {
		return err
	}
	row.add("still connected", float64(directCount(s)), "")
	r.Rows = append(r.Rows, row)
	return nil
}

// s6Command is the command line of a client process: this binary again,
// `bench --scenario S6 --json` (a test binary ignores the arguments: its
// TestMain sees S6ClientEnv first).
func s6Command(ctx context.Context) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, exe, "bench", "--scenario", "S6", "--json"), nil
}

// runS6Split runs the two clients in processes of their own against this
// process's test network and adds their rows and the servers'.
func runS6Split(ctx context.Context, b *bench, r *Result) error {
	w := b.window(3*time.Second, 10*time.Minute)
	r.Notes = append(r.Notes, "rows 'client process': each client in a process of its own (this binary, `bench --scenario S6` with "+S6ClientEnv+"), measuring itself with getrusage over its window after its peer is connected directly (no ping); row 'servers process': this process (test management, signal pinging every 5 s, relay, the harness) over a window of the same length that starts once both clients' have")
	b.progress("S6 per process, window %v", w)
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		return err
	}
	defer n.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		rows []Row
		err  error
	}
	names := []string{"a", "b"}
	started := make(chan struct{}, len(names))
	results := make(chan result, len(names))
	var wg sync.WaitGroup
	for _, name := range names {
		c := s6Client{Name: name, Management: n.ManagementURL(), SetupKey: n.SetupKey(), Window: w}
		if b.o.CPUProfile != "" {
			c.CPUProfile = b.o.CPUProfile + "-" + name
		}
		if b.o.Trace != "" {
			c.Trace = b.o.Trace + "-" + name
		}
		spec, err := json.Marshal(c)
		if err != nil {
			return err
		}
		cmd, err := s6Command(ctx)
		if err != nil {
			return err
		}
		cmd.Env = append(os.Environ(), S6ClientEnv+"="+string(spec))
		var out bytes.Buffer
		cmd.Stdout = &out
		pr, err := cmd.StderrPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("client process %s: %w", name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var tail []string
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				line := sc.Text()
				if strings.Contains(line, s6Marker) {
					started <- struct{}{}
				}
				if b.o.Progress != nil {
					fmt.Fprintf(b.o.Progress, "  [%s] %s\n", name, line)
				}
				if tail = append(tail, line); len(tail) > 20 {
					tail = tail[1:]
				}
			}
			err := cmd.Wait()
			var rep Report
			if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
				results <- result{err: fmt.Errorf("client process %s: %w: %w (stderr: %s)", name, err, jerr, strings.Join(tail, " | "))}
				return
			}
			s, ok := rep.Scenario("S6")
			switch {
			case !ok:
				err = fmt.Errorf("client process %s: no S6 in its report", name)
			case s.Error != "":
				err = fmt.Errorf("client process %s: %s", name, s.Error)
			case err != nil:
				err = fmt.Errorf("client process %s: %w", name, err)
			}
			results <- result{rows: s.Rows, err: err}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	// The servers' window starts once both clients' windows have (or a
	// client has failed: then its result says why).
	var rows []Row
	var errs []error
	got := 0
	for waiting := len(names); waiting > 0; {
		select {
		case <-started:
			waiting--
		case res := <-results:
			got++
			rows, errs = append(rows, res.rows...), append(errs, res.err)
			if res.err == nil {
				errs = append(errs, errors.New("a client process ended before its window started"))
			}
			waiting = 0
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	srv, err := observe(ctx, w, n, nil, fmt.Sprintf("servers process, %v", w), 2)
	if err != nil {
		return err
	}
	for ; got < len(names); got++ {
		select {
		case res := <-results:
			rows, errs = append(rows, res.rows...), append(errs, res.err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.Rows = append(r.Rows, rows...)
	r.Rows = append(r.Rows, srv)
	return nil
}
