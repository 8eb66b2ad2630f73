// Package config is the client's config file, /etc/netbird/config.json, with
// the official NetBird client's field names. The private key is created on
// first run and never changes: a new key is a new peer in the dashboard. A
// file that cannot be read or parsed is an error naming the file and the
// problem, and the file is left as it is; the key is never silently
// regenerated. Writes are atomic (temp file, fsync, rename) with mode 0600.
//
// Fields nbfsm does not know (the official client writes many) are kept as
// they are when the file is rewritten.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
)

// Defaults of the official client.
const (
	DefaultPath          = "/etc/netbird/config.json"
	DefaultManagementURL = "https://api.netbird.io:443"
	DefaultInterface     = "wt0"
	DefaultWgPort        = 51820
	DefaultMTU           = 1280
)

// Errors of Load; they are wrapped with the file name and the detail.
var (
	ErrRead    = errors.New("config: cannot read")
	ErrCorrupt = errors.New("config: not a valid config file")
	ErrWrite   = errors.New("config: cannot write")
)

// Config is the file's content. JSON names are the official ones.
type Config struct {
	PrivateKey         string   // base64 WireGuard private key (secret)
	PreSharedKey       string   `json:",omitempty"` // secret
	ManagementURL      URL      //
	WgIface            string   //
	WgPort             int      //
	MTU                int      `json:"MTU"`
	NetworkMonitor     *bool    `json:",omitempty"`
	DisableAutoConnect bool     //
	DisableDNS         bool     //
	DisableFirewall    bool     //
	BlockInbound       bool     //
	IFaceBlackList     []string `json:",omitempty"`

	extra map[string]json.RawMessage // fields nbfsm does not know, kept on rewrite
}

// known are the JSON names Config owns; the rest of the file is kept.
var known = []string{"PrivateKey", "PreSharedKey", "ManagementURL", "WgIface", "WgPort", "MTU", "NetworkMonitor",
	"DisableAutoConnect", "DisableDNS", "DisableFirewall", "BlockInbound", "IFaceBlackList"}

// Key parses the private key.
func (c *Config) Key() (wgtypes.Key, error) { return nbcrypto.ParseKey(c.PrivateKey) }

// MonitorEnabled is NetworkMonitor with its default (on).
func (c *Config) MonitorEnabled() bool { return c.NetworkMonitor == nil || *c.NetworkMonitor }

// URL is the management URL. The official file stores Go's url.URL as an
// object ({"Scheme":"https","Host":"api.netbird.io:443",...}); a plain
// string is read too. It is written in the official form.
type URL struct{ S string }

func (u URL) String() string { return u.S }

// MarshalJSON writes the official object form.
func (u URL) MarshalJSON() ([]byte, error) {
	if u.S == "" {
		return []byte("null"), nil
	}
	p, err := url.Parse(u.S)
	if err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

// UnmarshalJSON reads the object or a string.
func (u *URL) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		u.S = ""
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if _, err := url.Parse(s); err != nil {
			return fmt.Errorf("ManagementURL: %w", err)
		}
		u.S = s
		return nil
	}
	var p url.URL
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("ManagementURL: %w", err)
	}
	if p.Scheme == "" || p.Host == "" {
		return fmt.Errorf("ManagementURL: want Scheme and Host")
	}
	// Official files carry the path "" or "/": a base URL.
	p.Path, p.RawPath = strings.TrimSuffix(p.Path, "/"), ""
	u.S = p.String()
	return nil
}

// Defaults is a fresh config with a new private key.
func Defaults() (*Config, error) {
	k, err := nbcrypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	return &Config{PrivateKey: k.String(), ManagementURL: URL{DefaultManagementURL}, WgIface: DefaultInterface,
		WgPort: DefaultWgPort, MTU: DefaultMTU}, nil
}

// Load reads the config at path. A missing file is created with a new key
// (created is true); an unreadable or invalid one is an error and stays
// untouched.
func Load(path string) (c *Config, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		c, err := Defaults()
		if err != nil {
			return nil, false, err
		}
		if err := c.Save(path); err != nil {
			return nil, false, err
		}
		return c, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w %s: %w", ErrRead, path, unwrapPath(err))
	}
	c, err = Parse(b)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %s: %w (the file is left as it is; fix or move it away)", ErrCorrupt, path, err)
	}
	return c, false, nil
}

// unwrapPath drops the *PathError's repetition of the path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse parses a config file's bytes; it fills defaults for missing fields
// but never invents a private key.
func Parse(b []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, errors.New("not a JSON object")
	}
	c := &Config{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, err
	}
	if c.PrivateKey == "" {
		return nil, errors.New("no PrivateKey")
	}
	if _, err := c.Key(); err != nil {
		return nil, fmt.Errorf("PrivateKey: %w", err)
	}
	if c.PreSharedKey != "" {
		if _, err := nbcrypto.ParseKey(c.PreSharedKey); err != nil {
			return nil, fmt.Errorf("PreSharedKey: %w", err)
		}
	}
	if c.WgPort < 0 || c.WgPort > 65535 {
		return nil, fmt.Errorf("WgPort %d out of range", c.WgPort)
	}
	if c.MTU < 0 || c.MTU > 65535 {
		return nil, fmt.Errorf("MTU %d out of range", c.MTU)
	}
	hasPort := false
	for k := range raw {
		hasPort = hasPort || strings.EqualFold(k, "WgPort")
		for _, n := range known {
			if strings.EqualFold(k, n) {
				delete(raw, k)
				break
			}
		}
	}
	c.extra = raw
	if c.ManagementURL.S == "" {
		c.ManagementURL.S = DefaultManagementURL
	}
	if c.WgIface == "" {
		c.WgIface = DefaultInterface
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if !hasPort {
		c.WgPort = DefaultWgPort
	}
	return c, nil
}

// Marshal renders the file: the known fields and the kept unknown ones.
func (c *Config) Marshal() ([]byte, error) {
	all, err := c.knownFields()
	if err != nil {
		return nil, err
	}
	for k, v := range c.extra {
		all[k] = v
	}
	return json.MarshalIndent(all, "", "    ")
}

// knownFields is the fields Config owns, by JSON name.
func (c *Config) knownFields() (map[string]json.RawMessage, error) {
	own, err := json.Marshal(struct{ *Config }{c})
	if err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(own, &all); err != nil {
		return nil, err
	}
	return all, nil
}

// Redacted is c for a debug bundle: the known fields with the secrets
// (PrivateKey, PreSharedKey) shown only as set, and the fields nbfsm does
// not know (the official file's SSHKey, say) by name only.
func (c *Config) Redacted() ([]byte, error) {
	r := *c
	for _, s := range []*string{&r.PrivateKey, &r.PreSharedKey} {
		if *s != "" {
			*s = Hidden
		}
	}
	all, err := r.knownFields()
	if err != nil {
		return nil, err
	}
	hidden, _ := json.Marshal(Hidden)
	for k := range c.extra {
		all[k] = hidden
	}
	return json.MarshalIndent(all, "", "    ")
}

// Hidden stands for a value Redacted leaves out.
const Hidden = "(set, not shown)"

// Save writes c to path atomically with mode 0600: a temp file in the same
// directory, fsync, rename, fsync of the directory.
func (c *Config) Save(path string) error {
	b, err := c.Marshal()
	if err != nil {
		return fmt.Errorf("%w %s: %w", ErrWrite, path, err)
	}
	if err := WriteAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("%w %s: %w", ErrWrite, path, err)
	}
	return nil
}

// WriteAtomic writes data to path via a temp file and a rename, mode 0600.
func WriteAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return unwrapPath(err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return unwrapPath(err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
