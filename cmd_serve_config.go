package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/alecthomas/kong"
)

// The configuration file of `qpchat serve` (--config FILE or
// QPCHAT_CONFIG): TOML, one key per flag of `qpchat serve`, named as the
// flag (`max-conns = 2048`; `max_conns` works too):
//
//	listen = ":7000"
//	data = "/var/lib/qpchat"
//	admin-listen = "127.0.0.1:9090"
//	max-conns = 2048
//	shutdown-timeout = "30s"
//
// Precedence: a flag on the command line, then its QPCHAT_* variable,
// then the file, then the default. kong applies variables as defaults
// that resolvers override, and registers a kong.ConfigFlag's resolver
// after ours (TECH-NOTES §4), so the path is found by scanning the
// arguments before parsing, and a last resolver re-reads the variables.
//
// Secrets never go into the file: there is no flag for one (the store
// passphrase comes from QPCHAT_STORE_PASSPHRASE only), and keys that look
// like one are refused with a pointer to the *-file flag.

const configEnv = "QPCHAT_CONFIG"

// maxConfigFile bounds the configuration file.
const maxConfigFile = 1 << 20

// configOption returns the kong option that reads the configuration
// file named in args or QPCHAT_CONFIG, for `qpchat serve` only. A file
// that cannot be read or parsed fails the parse with a clear error.
func configOption(args []string) kong.Option {
	return kong.OptionFunc(func(k *kong.Kong) error {
		for _, o := range configOptions(args) {
			if err := o.Apply(k); err != nil {
				return err
			}
		}
		return nil
	})
}

func configOptions(args []string) []kong.Option {
	if !isServe(args) {
		return nil
	}
	path := scanConfigFlag(args)
	if path == "" {
		path = os.Getenv(configEnv)
	}
	if path == "" {
		return []kong.Option{kong.Resolvers(envResolver())}
	}
	r := &configResolver{path: kong.ExpandPath(path)}
	r.values, r.err = loadConfig(r.path)
	return []kong.Option{kong.Resolvers(r, envResolver())}
}

// isServe reports whether args select `qpchat serve` (global flags may
// come first).
func isServe(args []string) bool {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return false
		case a == "--log-format" || a == "--log-level":
			i++ // its value
		case strings.HasPrefix(a, "-"):
		default:
			return a == "serve"
		}
	}
	return false
}

// scanConfigFlag finds --config FILE or --config=FILE before any "--".
func scanConfigFlag(args []string) string {
	path := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			path = v
		} else if a == "--config" && i+1 < len(args) {
			path = args[i+1]
			i++
		}
	}
	return path
}

// loadConfig reads and parses the file into flag name → value.
func loadConfig(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("configuration file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, fmt.Errorf("configuration file %s: %w", path, err)
	}
	if len(b) > maxConfigFile {
		return nil, fmt.Errorf("configuration file %s is larger than %d bytes", path, maxConfigFile)
	}
	return parseConfig(path, b)
}

// parseConfig turns TOML into flag name → value text (as on the command
// line). Only top-level scalars are allowed.
func parseConfig(path string, b []byte) (map[string]string, error) {
	raw := map[string]any{}
	if _, err := toml.Decode(string(b), &raw); err != nil {
		return nil, fmt.Errorf("configuration file %s: %w", path, err)
	}
	values := make(map[string]string, len(raw))
	for k, v := range raw {
		name := strings.ReplaceAll(k, "_", "-")
		if secretKey(name) {
			return nil, fmt.Errorf("configuration file %s: %q looks like a secret; secrets never go into the configuration file (use store-key-file, or %s from a secret store)", path, k, storePassphraseEnv)
		}
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case bool:
			s = strconv.FormatBool(v)
		case int64:
			s = strconv.FormatInt(v, 10)
		case float64:
			s = strconv.FormatFloat(v, 'f', -1, 64)
		default:
			return nil, fmt.Errorf("configuration file %s: %q must be a string, number or boolean, not %T", path, k, v)
		}
		if _, dup := values[name]; dup {
			return nil, fmt.Errorf("configuration file %s: %q is given twice", path, name)
		}
		values[name] = s
	}
	return values, nil
}

// secretKey reports whether a key names a secret rather than a file.
func secretKey(name string) bool {
	if strings.HasSuffix(name, "-file") {
		return false
	}
	for _, w := range []string{"password", "passphrase", "secret", "token", "private-key"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// configResolver resolves flags from the configuration file.
type configResolver struct {
	path   string
	values map[string]string
	err    error
}

// notInConfig are serve flags that make no sense in the file.
var notInConfig = []string{"config", "print-config", "help"}

// Validate fails on an unreadable file and on keys that are not flags of
// `qpchat serve` (a typo would otherwise be ignored silently).
func (r *configResolver) Validate(app *kong.Application) error {
	if r.err != nil {
		return r.err
	}
	known := map[string]bool{}
	for _, f := range serveFlags(app) {
		known[f.Name] = true
	}
	var unknown []string
	for k := range r.values {
		if !known[k] || slices.Contains(notInConfig, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("configuration file %s: unknown keys %s (keys are the flags of `qpchat serve --help`)", r.path, strings.Join(unknown, ", "))
	}
	return nil
}

// Resolve returns the file's value of flag.
func (r *configResolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	// An empty value leaves the flag at its default (a path flag would
	// otherwise become the working directory).
	if v, ok := r.values[flag.Name]; ok && v != "" && !slices.Contains(notInConfig, flag.Name) {
		return v, nil
	}
	return nil, nil
}

// envResolver comes last: a flag's QPCHAT_* variable beats the file.
func envResolver() kong.Resolver {
	return kong.ResolverFunc(func(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		for _, e := range flag.Envs {
			if v, ok := os.LookupEnv(e); ok {
				return v, nil
			}
		}
		return nil, nil
	})
}

// serveFlags returns the flags of `qpchat serve` and the global ones.
func serveFlags(app *kong.Application) []*kong.Flag {
	var out []*kong.Flag
	out = append(out, app.Flags...)
	for _, c := range app.Children {
		if c.Name == "serve" {
			out = append(out, c.Flags...)
		}
	}
	return out
}

// printConfig writes the effective configuration of `qpchat serve` as a
// TOML file that --config accepts. There is no secret in it: no flag
// holds one.
func printConfig(w io.Writer, kctx *kong.Context) error {
	if kctx == nil {
		return errors.New("internal error: no parse context for --print-config")
	}
	flags := serveFlags(kctx.Model)
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	fmt.Fprintln(w, "# qpchat serve: effective configuration (flag > QPCHAT_* variable > file > default)")
	for _, f := range flags {
		if slices.Contains(notInConfig, f.Name) {
			continue
		}
		v := f.Target
		var val string
		switch x := v.Interface().(type) {
		case string:
			if x == "" {
				fmt.Fprintf(w, "# %s = \"\"\n", f.Name)
				continue
			}
			val = strconv.Quote(x)
		case time.Duration:
			val = strconv.Quote(x.String())
		case bool:
			val = strconv.FormatBool(x)
		case int:
			val = strconv.Itoa(x)
		default:
			val = strconv.Quote(fmt.Sprint(x))
		}
		fmt.Fprintf(w, "%s = %s\n", f.Name, val)
	}
	if _, ok := os.LookupEnv(storePassphraseEnv); ok {
		fmt.Fprintf(w, "# the store key comes from %s (not shown)\n", storePassphraseEnv)
	}
	return nil
}
