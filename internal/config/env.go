package config

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// EnvName is the environment variable of a flag, as the official client
// names them: NB_ and the flag name upper-cased, dashes as underscores
// (--setup-key → NB_SETUP_KEY).
func EnvName(flag string) string {
	return "NB_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// ApplyEnv sets every flag of fs that was not given on the command line
// from its environment variable, if that is set: a flag on the command line
// wins over the variable, the variable over the default. Flags set this way
// count as Changed, so callers treat them as given. An unparsable value is
// an error naming the variable.
func ApplyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := EnvName(f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s: %w", name, e) // the value may be a secret: not repeated
		}
	})
	return err
}
