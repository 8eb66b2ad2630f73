package daemon

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/proto/daemonpb"
	"github.com/nbfsm/nbfsm/internal/version"
)

// BundleLogMax bounds the log's share of a bundle: its last bytes, from a
// line's start.
const BundleLogMax = 16 << 20

func (a *api) DebugBundle(context.Context, *daemonpb.DebugBundleRequest) (*daemonpb.DebugBundleResponse, error) {
	path, err := a.d.Bundle("")
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &daemonpb.DebugBundleResponse{Path: path}, nil
}

// Bundle writes what a maintainer asks for when a user reports a problem
// into a zip in dir (os.TempDir() when empty), mode 0600, and returns its
// path: the status and counters as the API gives them, the trace ring, the
// config without its secrets, the goroutines, and the tail of the log file.
// No private key, preshared key or setup key is in it (the status and the
// trace never hold one, and the config is Redacted).
func (d *Daemon) Bundle(dir string) (string, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "netbird.debug.*.zip") // mode 0600
	if err != nil {
		return "", fmt.Errorf("debug bundle: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	z := zip.NewWriter(f)
	now := time.Now()
	add := func(name string, b []byte) error {
		w, err := z.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: now})
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	for _, e := range d.bundleEntries(now) {
		if err := add(e.name, e.data); err != nil {
			return "", fmt.Errorf("debug bundle: %w", err)
		}
	}
	if err := z.Close(); err != nil {
		return "", fmt.Errorf("debug bundle: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("debug bundle: %w", err)
	}
	ok = true
	d.log.Info("debug bundle written", zap.String("path", f.Name()))
	return f.Name(), nil
}

type bundleEntry struct {
	name string
	data []byte
}

// bundleEntries renders each file; a part that cannot be read becomes a
// line saying why, so a bundle is written whatever state the daemon is in.
func (d *Daemon) bundleEntries(now time.Time) []bundleEntry {
	pj := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}
	msg := func(m proto.Message, err error) []byte {
		if err != nil {
			return []byte("unavailable: " + err.Error() + "\n")
		}
		b, err := pj.Marshal(m)
		if err != nil {
			return []byte("unavailable: " + err.Error() + "\n")
		}
		return append(b, '\n')
	}
	var out []bundleEntry
	level := "fixed"
	if d.o.Level != nil {
		level = d.o.Level.Level().String()
	}
	out = append(out, bundleEntry{"version.txt", fmt.Appendf(nil,
		"nbfsm %s (reports NetBird %s)\n%s %s/%s, %d CPUs\nnetstack %v\ndaemon started %s (up %s)\nbundle at %s\nlog level %s\n",
		version.NBFSM, version.Reported, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), d.o.Netstack,
		d.started.UTC().Format(time.RFC3339), now.Sub(d.started).Round(time.Second), now.UTC().Format(time.RFC3339), level)})
	out = append(out, bundleEntry{"status.json", msg(d.status())})
	out = append(out, bundleEntry{"debug.json", msg(d.debug(), nil)})

	var ev bytes.Buffer
	for _, r := range d.ring.Snapshot() {
		if b, err := protojson.Marshal(event(r)); err == nil { // the Events API's message, one a line
			ev.Write(append(b, '\n'))
		}
	}
	out = append(out, bundleEntry{"events.jsonl", ev.Bytes()})

	cfg := d.Config()
	b, err := cfg.Redacted()
	if err != nil {
		b = []byte("unavailable: " + err.Error())
	}
	out = append(out, bundleEntry{"config.json", append(b, '\n')})

	var g bytes.Buffer
	if p := pprof.Lookup("goroutine"); p != nil {
		_ = p.WriteTo(&g, 1)
	}
	out = append(out, bundleEntry{"goroutines.txt", g.Bytes()})

	if path := d.o.LogFile; path != "" {
		b, err := logTail(path, BundleLogMax)
		if err != nil {
			b = []byte("unavailable: " + err.Error() + "\n")
		}
		out = append(out, bundleEntry{"client.log", b})
	}
	return out
}

// ReadBundle reads a bundle's files by name (tests, and tools that check a
// bundle before it is sent).
func ReadBundle(path string) (map[string]string, error) {
	z, err := zip.OpenReader(path)
	if err != nil {
		return nil, err
	}
	defer z.Close()
	out := map[string]string{}
	for _, f := range z.File {
		r, err := f.Open()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(r, 1<<30))
		_ = r.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		out[f.Name] = string(b)
	}
	return out, nil
}

// logTail is the file's last max bytes, from the first line that starts
// in them.
func logTail(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New(path + " is not a regular file")
	}
	off := fi.Size() - max
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return nil, err
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b, nil
}
