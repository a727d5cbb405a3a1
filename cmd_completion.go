package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/alecthomas/kong"

	nc "qpchat/node/client"
)

// Shell completion. `qpchat completion SHELL` prints a small script that
// asks the binary itself for candidates (`qpchat __complete WORDS...`,
// hidden), so the scripts never go stale: commands and flags come from
// the kong model, enum flag values from their enum, --profile from the
// state directory's NAME.state files, and group arguments from the
// profile's groups when the state passphrase is in the environment (a
// completion never prompts).

// CompletionCmd prints a completion script.
type CompletionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"Shell: bash, zsh or fish."`
}

// Run prints the script for the shell.
func (c *CompletionCmd) Run(g *Globals) error {
	switch c.Shell {
	case "bash":
		fmt.Fprint(g.stdout, bashCompletion)
	case "zsh":
		fmt.Fprint(g.stdout, zshCompletion)
	case "fish":
		fmt.Fprint(g.stdout, fishCompletion)
	}
	return nil
}

const bashCompletion = `# qpchat completion for bash: source <(qpchat completion bash)
_qpchat() {
	local IFS=$'\n'
	COMPREPLY=($(qpchat __complete -- "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _qpchat qpchat
`

const zshCompletion = `#compdef qpchat
# qpchat completion for zsh: qpchat completion zsh > "${fpath[1]}/_qpchat"
_qpchat() {
	local -a candidates
	candidates=("${(@f)$(qpchat __complete -- "${(@)words[2,CURRENT]}" 2>/dev/null)}")
	compadd -a candidates
}
compdef _qpchat qpchat
`

const fishCompletion = `# qpchat completion for fish: qpchat completion fish > ~/.config/fish/completions/qpchat.fish
function __qpchat_complete
	set -l words (commandline -opc) (commandline -ct)
	qpchat __complete -- $words[2..-1] 2>/dev/null
end
complete -c qpchat -f -a '(__qpchat_complete)'
`

// CompleteCmd answers the completion scripts.
type CompleteCmd struct {
	Words []string `arg:"" optional:"" passthrough:"" help:"The words typed after qpchat, the last one being completed."`
}

// Run prints one candidate per line.
func (c *CompleteCmd) Run(g *Globals, k *kong.Kong) error {
	for _, s := range complete(k.Model, c.Words) {
		fmt.Fprintln(g.stdout, s)
	}
	return nil
}

// complete returns the candidates for the last of words.
func complete(app *kong.Application, words []string) []string {
	if len(words) > 0 && words[0] == "--" {
		words = words[1:]
	}
	cur := ""
	if len(words) > 0 {
		cur, words = words[len(words)-1], words[:len(words)-1]
	}
	node := app.Node
	flags := flagMap(node)
	var pending *kong.Flag        // a flag waiting for its value
	values := map[string]string{} // flag values typed so far
	var positional int
	for _, w := range words {
		if pending != nil {
			values[pending.Name] = w
			pending = nil
			continue
		}
		if strings.HasPrefix(w, "--") {
			name, v, hasValue := strings.Cut(w[2:], "=")
			if f := flags[name]; f != nil && !f.IsBool() {
				if hasValue {
					values[name] = v
				} else {
					pending = f
				}
			}
			continue
		}
		if strings.HasPrefix(w, "-") {
			continue
		}
		if child := childNamed(node, w); child != nil {
			node = child
			for k, v := range flagMap(node) {
				flags[k] = v
			}
			positional = 0
			continue
		}
		positional++
	}
	var out []string
	switch {
	case pending != nil:
		out = flagValues(pending, flags, values)
	case strings.HasPrefix(cur, "-"):
		for name, f := range flags {
			if !f.Hidden {
				out = append(out, "--"+name)
			}
		}
	default:
		for _, ch := range node.Children {
			if !ch.Hidden {
				out = append(out, ch.Name)
			}
		}
		if positional < len(node.Positional) && node.Positional[positional].Name == "group" {
			out = append(out, completionGroupNames(flags, values)...)
		}
	}
	sort.Strings(out)
	var match []string
	for _, s := range out {
		if strings.HasPrefix(s, cur) {
			match = append(match, s)
		}
	}
	return match
}

func childNamed(n *kong.Node, name string) *kong.Node {
	for _, c := range n.Children {
		if c.Name == name || containsString(c.Aliases, name) {
			return c
		}
	}
	return nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// flagMap returns the flags of n and its ancestors by name.
func flagMap(n *kong.Node) map[string]*kong.Flag {
	m := map[string]*kong.Flag{}
	for p := n; p != nil; p = p.Parent {
		for _, f := range p.Flags {
			if _, ok := m[f.Name]; !ok {
				m[f.Name] = f
			}
		}
	}
	return m
}

// flagValues returns the candidates for a flag's value.
func flagValues(f *kong.Flag, flags map[string]*kong.Flag, values map[string]string) []string {
	if f.Enum != "" {
		var out []string
		for _, v := range strings.Split(f.Enum, ",") {
			out = append(out, strings.TrimSpace(v))
		}
		return out
	}
	if f.Name == "profile" {
		return profileNames(flags, values)
	}
	return nil
}

// completionStateDir is the state directory the completion looks in:
// --state-dir as typed, its variable, else the default.
func completionStateDir(flags map[string]*kong.Flag, values map[string]string) string {
	if d := values["state-dir"]; d != "" {
		return kong.ExpandPath(d)
	}
	if d := os.Getenv("QPCHAT_STATE_DIR"); d != "" {
		return d
	}
	if f := flags["state-dir"]; f != nil {
		return stateDir(kong.ExpandPath(f.Default))
	}
	return stateDir(kong.ExpandPath("~/.local/share/qpchat"))
}

// profileNames lists NAME of every NAME.state in the state directory.
func profileNames(flags map[string]*kong.Flag, values map[string]string) []string {
	matches, _ := filepath.Glob(filepath.Join(completionStateDir(flags, values), "*.state"))
	var out []string
	for _, m := range matches {
		out = append(out, strings.TrimSuffix(filepath.Base(m), ".state"))
	}
	return out
}

// groupNames lists the groups of the profile typed (--profile), else of
// QPCHAT_PROFILE, else "default", only when the state can be opened
// without a prompt.
func completionGroupNames(flags map[string]*kong.Flag, values map[string]string) []string {
	if os.Getenv(envPassphrase) == "" && os.Getenv(envPassphraseFile) == "" {
		return nil
	}
	profile := values["profile"]
	if profile == "" {
		profile = os.Getenv("QPCHAT_PROFILE")
	}
	if profile == "" {
		profile = "default"
	}
	g := &Globals{stdout: io.Discard, stderr: io.Discard}
	f := &ClientFlags{StateDir: completionStateDir(flags, values)}
	st, err := openState(g, f, &ProfileFlags{Profile: profile}, false)
	if err != nil {
		return nil
	}
	defer st.Close()
	cl, err := nc.New(nc.Config{State: st})
	if err != nil {
		return nil
	}
	gs, err := cl.Groups(context.Background())
	if err != nil {
		return nil
	}
	var out []string
	for _, x := range gs {
		if !x.Removed {
			out = append(out, x.Name)
		}
	}
	return out
}
