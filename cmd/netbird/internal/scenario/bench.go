package scenario

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	nbclient "github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/internal/wgiface"
)

// BenchOptions configure Bench (`netbird bench`). The zero value runs every
// scenario at full length.
type BenchOptions struct {
	// Scenarios to run ("S1" … "S8"); nil: all, in order.
	Scenarios []string
	// Short: small N and windows of a second or two (CI proves that every
	// scenario still runs; its figures are not the ones to quote).
	Short bool
	// Peers overrides the N of the scenarios that take N (S1, S2, S7: the
	// list; S4, S5, S8: the first entry).
	Peers []int
	// Window overrides each scenario's measurement window.
	Window time.Duration
	// Samples is S3's runs per key order (default 20; short 5).
	Samples int
	// Outage is S2's management outage (default 5 min; short 2 s).
	Outage time.Duration
	// Progress gets one line per step (nil: discarded).
	Progress io.Writer
	// CPUProfile, if not empty, is the prefix of CPU profiles (pprof) of
	// the measurement windows only, one file per window: CPUProfile.1, .2, …
	CPUProfile string
	// MemProfile, if not empty, gets a heap profile (pprof) written after
	// each window's GC, replacing the one before: the last window's.
	MemProfile string
	// Trace, if not empty, is the prefix of execution traces (runtime/trace)
	// of the measurement windows, one file per window: what woke the process.
	Trace string
}

// Report is a run of Bench: the machine and every figure.
type Report struct {
	GoVersion  string    `json:"go_version"`
	GOOS       string    `json:"goos"`
	GOARCH     string    `json:"goarch"`
	CPU        string    `json:"cpu"`
	NumCPU     int       `json:"num_cpu"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	Short      bool      `json:"short"`
	Started    time.Time `json:"started"`
	Scenarios  []Result  `json:"scenarios"`
}

// Result is one scenario.
type Result struct {
	ID      string   `json:"id"`
	Title   string   `json:"title"`
	Notes   []string `json:"notes,omitempty"`
	Rows    []Row    `json:"rows"`
	Seconds float64  `json:"seconds"`
	Error   string   `json:"error,omitempty"`
}

// Row is one measurement of a scenario: one N, one window.
type Row struct {
	Label   string   `json:"label"`
	N       int      `json:"n"`
	Figures []Figure `json:"figures"`
}

// Figure is one number.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
}

// Get returns the figure called name.
func (r Row) Get(name string) (float64, bool) {
	for _, f := range r.Figures {
		if f.Name == name {
			return f.Value, true
		}
	}
	return 0, false
}

func (r *Row) add(name string, v float64, unit string) {
	r.Figures = append(r.Figures, Figure{Name: name, Value: v, Unit: unit})
}

// Scenario returns the result with id.
func (r *Report) Scenario(id string) (Result, bool) {
	for _, s := range r.Scenarios {
		if s.ID == id {
			return s, true
		}
	}
	return Result{}, false
}

type scenarioFunc func(ctx context.Context, b *bench, r *Result) error

type scenarioDef struct {
	id, title string
	run       scenarioFunc
}

var scenarios = []scenarioDef{
	{"S1", "outage idle: N parked peers, management and signal down", runS1},
	{"S2", "recovery: a star of real clients; signal down until every peer parked, then up; management down, then up", runS2},
	{"S3", "cold start → first packet (two fresh clients, both key orders)", runS3},
	{"S4", "engine: events through the loop, reconcile of a 10 000-peer map, longest dispatch", runS4},
	{"S5", "memory: bytes and goroutines per parked, session and connected peer", runS5},
	{"S6", "connected idle: two connected clients, no traffic, signal pinging every 5 s; then each client in a process of its own", runS6All},
	{"S7", "servers up, N offline peers: offers and cost per window", runS7},
	{"S8", "management unreachable with N offline peers, signal up: RSS and CPU sampled every 10 s", runS8},
}

// IDs lists the scenario ids in order.
func IDs() []string {
	ids := make([]string, len(scenarios))
	for i, s := range scenarios {
		ids[i] = s.id
	}
	return ids
}

// ErrUnknownScenario is returned for a --scenario id that does not exist.
var ErrUnknownScenario = errors.New("scenario: unknown scenario")

type bench struct {
	o BenchOptions
}

// windowProfile writes a CPU profile (pprof) of each measurement window to
// its own file, prefix.1, prefix.2, …: setup (login, pushing the map) and the
// GC that measures the heap after a window are not in them. `go tool pprof`
// merges the files. Only for the goroutine running Bench.
type windowProfile struct {
	prefix string // CPU profiles; "" for none
	heap   string // heap profile; "" for none
	trace  string // execution traces; "" for none
	tf     *os.File
	n      int
	f      *os.File
	errs   []error
}

var winProf *windowProfile

func (p *windowProfile) start() {
	if p == nil {
		return
	}
	p.n++
	if p.trace != "" && p.tf == nil {
		f, err := os.Create(fmt.Sprintf("%s.%d", p.trace, p.n))
		if err == nil {
			if err = trace.Start(f); err != nil {
				_ = f.Close()
			}
		}
		if err != nil {
			p.errs = append(p.errs, err)
		} else {
			p.tf = f
		}
	}
	if p.f != nil || p.prefix == "" {
		return
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", p.prefix, p.n))
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		p.errs = append(p.errs, err)
		return
	}
	p.f = f
}

func (p *windowProfile) stop() {
	if p == nil {
		return
	}
	if p.tf != nil {
		trace.Stop()
		if err := p.tf.Close(); err != nil {
			p.errs = append(p.errs, err)
		}
		p.tf = nil
	}
	if p.f == nil {
		return
	}
	pprof.StopCPUProfile()
	if err := p.f.Close(); err != nil {
		p.errs = append(p.errs, err)
	}
	p.f = nil
}

// writeHeap writes the heap profile (after the window's GC).
func (p *windowProfile) writeHeap() {
	if p == nil || p.heap == "" {
		return
	}
	f, err := os.Create(p.heap)
	if err == nil {
		err = pprof.Lookup("heap").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

// lockedWriter serializes the writes of several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (b *bench) progress(format string, args ...any) {
	if b.o.Progress != nil {
		fmt.Fprintf(b.o.Progress, "bench: "+format+"\n", args...)
	}
}

// ns picks the N list of a scenario: --peers, else short or full.
func (b *bench) ns(short, full []int) []int {
	switch {
	case len(b.o.Peers) > 0:
		return b.o.Peers
	case b.o.Short:
		return short
	}
	return full
}

func (b *bench) n(short, full int) int { return b.ns([]int{short}, []int{full})[0] }

func (b *bench) window(short, full time.Duration) time.Duration {
	switch {
	case b.o.Window > 0:
		return b.o.Window
	case b.o.Short:
		return short
	}
	return full
}

// Bench runs the selected scenarios and returns every figure. A scenario
// that fails is recorded with its error and the others still run; the
// returned error joins the failures.
func Bench(ctx context.Context, o BenchOptions) (*Report, error) {
	if o.Progress != nil {
		// S6's client processes report their lines from goroutines of their own.
		o.Progress = &lockedWriter{w: o.Progress}
	}
	sel := map[string]bool{}
	for _, id := range o.Scenarios {
		id = strings.ToUpper(strings.TrimSpace(id))
		found := false
		for _, s := range scenarios {
			found = found || s.id == id
		}
		if !found {
			return nil, fmt.Errorf("%w: %q (known: %s)", ErrUnknownScenario, id, strings.Join(IDs(), ","))
		}
		sel[id] = true
	}
	rep := &Report{GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPU: cpuModel(),
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Short: o.Short, Started: time.Now().UTC()}
	b := &bench{o: o}
	var errs []error
	if o.CPUProfile != "" || o.MemProfile != "" || o.Trace != "" {
		winProf = &windowProfile{prefix: o.CPUProfile, heap: o.MemProfile, trace: o.Trace}
	}
	for _, s := range scenarios {
		if len(sel) > 0 && !sel[s.id] {
			continue
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		b.progress("%s: %s", s.id, s.title)
		r := Result{ID: s.id, Title: s.title}
		start := time.Now()
		err := s.run(ctx, b, &r)
		r.Seconds = time.Since(start).Seconds()
		if err != nil {
			r.Error = err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", s.id, err))
			b.progress("%s failed: %v", s.id, err)
		}
		rep.Scenarios = append(rep.Scenarios, r)
	}
	if winProf != nil {
		b.progress("profiled %d windows (cpu %q, trace %q, heap %q)", winProf.n, o.CPUProfile, o.Trace, o.MemProfile)
		errs = append(errs, winProf.errs...)
		winProf = nil
	}
	return rep, errors.Join(errs...)
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes one table per scenario.
func (r *Report) WriteTable(w io.Writer) {
	mode := "full"
	if r.Short {
		mode = "short (CI: proves each scenario runs; not figures to quote)"
	}
	fmt.Fprintf(w, "netbird bench: %s %s/%s, %s, %d CPUs, GOMAXPROCS %d, %s\n", r.GoVersion, r.GOOS, r.GOARCH, r.CPU,
		r.NumCPU, r.GOMAXPROCS, mode)
	fmt.Fprintln(w, "every figure is this whole process's (the clients and the in-process test servers), except S6's client-process rows (each client in its own process)")
	for _, s := range r.Scenarios {
		fmt.Fprintf(w, "\n%s %s (%.1f s)\n", s.ID, s.Title, s.Seconds)
		if s.Error != "" {
			fmt.Fprintf(w, "  FAILED: %s\n", s.Error)
		}
		writeRows(w, s.Rows)
		for _, n := range s.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
	}
}

// writeRows prints rows as a table whose columns are the union of their
// figures; rows with the same figure set share a header.
func writeRows(w io.Writer, rows []Row) {
	for i := 0; i < len(rows); {
		j := i + 1
		for j < len(rows) && sameNames(rows[i], rows[j]) {
			j++
		}
		group := rows[i:j]
		head := []string{""}
		for _, f := range group[0].Figures {
			h := f.Name
			if f.Unit != "" {
				h += " (" + f.Unit + ")"
			}
			head = append(head, h)
		}
		cells := [][]string{head}
		for _, r := range group {
			line := []string{r.Label}
			for _, f := range r.Figures {
				line = append(line, formatValue(f.Value))
			}
			cells = append(cells, line)
		}
		widths := make([]int, len(head))
		for _, l := range cells {
			for k, c := range l {
				widths[k] = max(widths[k], len(c))
			}
		}
		for _, l := range cells {
			var sb strings.Builder
			sb.WriteString("  ")
			for k, c := range l {
				if k == 0 {
					fmt.Fprintf(&sb, "%-*s", widths[k], c)
				} else {
					fmt.Fprintf(&sb, " | %*s", widths[k], c)
				}
			}
			fmt.Fprintln(w, sb.String())
		}
		i = j
	}
}

func sameNames(a, b Row) bool {
	if len(a.Figures) != len(b.Figures) {
		return false
	}
	for i := range a.Figures {
		if a.Figures[i].Name != b.Figures[i].Name {
			return false
		}
	}
	return true
}

func formatValue(v float64) string {
	switch av := abs(v); {
	case v == float64(int64(v)) && av < 1e15:
		return strconv.FormatInt(int64(v), 10)
	case av >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case av >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// usage is what a user sees of the process: getrusage and /proc/self/statm.
type usage struct {
	at         time.Time
	cpu        time.Duration // utime + stime
	switches   int64         // ru_nvcsw + ru_nivcsw
	maxRSS     int64         // bytes (ru_maxrss)
	rss        int64         // bytes, now (/proc/self/statm)
	goroutines int
	heap       uint64 // after a GC when measured with gc, else the live heap of the last GC
	gcCycles   uint64 // completed GC cycles (forced or not)
	voluntary  int64  // ru_nvcsw: the process waited (a wake-up); the rest are preemptions, which load adds
}

var runtimeMetrics = []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}

func measure(gc bool) usage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	u := usage{at: time.Now(), cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		switches: int64(ru.Nvcsw + ru.Nivcsw), maxRSS: int64(ru.Maxrss) * 1024, rss: CurrentRSS()}
	rm := append([]metrics.Sample(nil), runtimeMetrics...)
	metrics.Read(rm)
	u.heap, u.gcCycles = metricUint(rm[0]), metricUint(rm[1])
	u.voluntary = int64(ru.Nvcsw)
	u.goroutines = runtime.NumGoroutine()
	if gc {
		// Twice: sync.Pool's victim cache (wireguard-go's buffers) survives one.
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		u.heap = ms.HeapAlloc
	}
	return u
}

func metricUint(s metrics.Sample) uint64 {
	if s.Value.Kind() == metrics.KindUint64 {
		return s.Value.Uint64()
	}
	return 0
}

// settle collects the setup's garbage before a scenario's first window, so
// that the windows see the steady state: afterwards nothing forces a GC
// (observe reads the live heap of the runtime's last GC), and a window holds
// the GCs an idle process really runs (the runtime forces one every 2 min).
func settle() {
	runtime.GC()
	runtime.GC()
}

// CurrentRSS reads the process's resident set from /proc/self/statm (0
// elsewhere).
func CurrentRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

const mib = 1 << 20

// counters are the clients' own: loop events, timer fires, datagrams on
// their shared sockets.
type counters struct {
	events, timers, datagrams, offers int64
}

type member struct {
	c       *nbclient.Client
	key     wgtypes.Key
	changes *fsmwatch.Changes
	name    string
}

func (m *member) close() { _ = m.c.Close() }

func sumCounters(n *testnet.Network, ms []*member) counters {
	var c counters
	for _, m := range ms {
		st := m.c.Loop().Stats()
		c.events += int64(st.Dispatched)
		c.timers += st.TimersFired
		s := m.c.SocketStats()
		c.datagrams += int64(s.WireGuardIn + s.WireGuardOut + s.STUNIn + s.STUNOut + s.RelayIn + s.RelayOut)
	}
	if n != nil {
		c.offers = int64(n.Signal.Sends())
	}
	return c
}

// observe measures one window of d: one timer, no polling. It forces no GC
// (a forced GC at each window's end reset the runtime's 2-minute clock, so
// the windows never held the periodic GC an idle process pays): heap is the
// live heap of the runtime's last GC, and the GC cycles of the window are a
// figure of it. Context switches are all of them (ru_nvcsw + ru_nivcsw);
// voluntary is the part in which the process waited, what an idle process
// controls (preemptions grow with the machine's load).
func observe(ctx context.Context, d time.Duration, n *testnet.Network, ms []*member, label string, N int) (Row, error) {
	c0, u0, w0 := sumCounters(n, ms), measure(false), warnings.Load()
	winProf.start()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		winProf.stop()
		return Row{}, ctx.Err()
	}
	winProf.stop()
	c1, u1 := sumCounters(n, ms), measure(false)
	winProf.writeHeap()
	min := u1.at.Sub(u0.at).Minutes()
	r := Row{Label: label, N: N}
	r.add("window", u1.at.Sub(u0.at).Seconds(), "s")
	r.add("ctx switches", float64(u1.switches-u0.switches)/min, "/min")
	r.add("CPU", (u1.cpu-u0.cpu).Seconds()/min, "s/min")
	r.add("voluntary", float64(u1.voluntary-u0.voluntary)/min, "/min")
	r.add("GC cycles", float64(u1.gcCycles-u0.gcCycles), "")
	r.add("loop events", float64(c1.events-c0.events)/min, "/min")
	r.add("timer fires", float64(c1.timers-c0.timers)/min, "/min")
	r.add("datagrams", float64(c1.datagrams-c0.datagrams)/min, "/min")
	if n != nil {
		r.add("offers", float64(c1.offers-c0.offers)/min, "/min")
	}
	r.add("warn log lines", float64(warnings.Load()-w0), "")
	r.add("goroutines", float64(u1.goroutines), "")
	r.add("RSS", float64(u1.rss)/mib, "MiB")
	r.add("max RSS", float64(u1.maxRSS)/mib, "MiB")
	r.add("heap", float64(u1.heap)/mib, "MiB")
	return r, nil
}

// join starts a client of n with key.
func join(ctx context.Context, n *testnet.Network, name string, key wgtypes.Key, obs ...fsm.Observer) (*member, error) {
	changes := fsmwatch.NewChanges()
	c, err := nbclient.New(nbclient.Options{ManagementURL: n.ManagementURL(), PrivateKey: key, SetupKey: n.SetupKey(),
		Meta: mgmt.Meta{Hostname: name, GoOS: runtime.GOOS}, Mode: wgiface.Netstack,
		Listen: mustLoopback(), Logger: countingLogger(), Observers: append([]fsm.Observer{changes}, obs...),
		MeasureDispatch: true})
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return &member{c: c, key: key, changes: changes, name: name}, nil
}

// wait waits for ok(status) of m, re-checking after each of m's
// transitions.
func wait(ctx context.Context, m *member, timeout time.Duration, what string, ok func(engine.Status) bool) error {
	var last engine.Status
	err := m.changes.Wait(ctx, timeout, func() (bool, error) {
		s, err := m.c.Status()
		last = s
		return err == nil && ok(s), err
	})
	if errors.Is(err, fsmwatch.ErrTimeout) {
		return fmt.Errorf("%s: %s not reached in %v (engine %s, management %s, signal %s)", m.name, what, timeout,
			last.State, last.Management.State, last.Signal.State)
	}
	return err
}

func median(ds []time.Duration) (med, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[len(s)-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
