package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/term"

	nc "qpchat/node/client"
)

// SendFileCmd sends a file to a group.
type SendFileCmd struct {
	Group string `arg:"" help:"Group name."`
	Path  string `arg:"" type:"existingfile" help:"The file to send. It is encrypted here under a fresh key; the node stores only the ciphertext and learns its size."`
}

// Run sends the file.
func (c *SendFileCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	fi, err := os.Stat(c.Path)
	if err != nil {
		return err
	}
	ctx, cancel := fileContext(f, uint64(fi.Size()))
	defer cancel()
	cn, err := connect(ctx, g, f, p)
	if err != nil {
		return err
	}
	defer cn.Close()
	bar := newProgress(g, "sending "+termSafe(filepath.Base(c.Path)))
	ref, err := cn.c.SendFile(ctx, c.Group, c.Path, bar.update)
	bar.done()
	if err != nil {
		return cn.lost(f.Server, err)
	}
	o := newOut(g, p)
	o.emit(map[string]any{"group": c.Group, "sent": true, "file": ref.Name, "size": ref.Size},
		"sent %s (%s) to %s", termSafe(ref.Name), humanBytes(ref.Size), termSafe(c.Group))
	return nil
}

// DownloadCmd saves files received earlier (recv saves new ones itself).
type DownloadCmd struct {
	Group       string `arg:"" help:"Group name."`
	Name        string `arg:"" optional:"" help:"File name as shown by recv or chat; default: the newest file of the group."`
	DownloadDir string `type:"path" env:"QPCHAT_DOWNLOAD_DIR" placeholder:"DIR" help:"Where files are saved (default: $XDG_DOWNLOAD_DIR/qpchat, else ~/Downloads/qpchat)."`
}

// Run downloads.
func (c *DownloadCmd) Run(g *Globals, f *ClientFlags, p *ProfileFlags) error {
	ctx, cancel := fileContext(f, 0)
	defer cancel()
	cn, err := connect(ctx, g, f, p)
	if err != nil {
		return err
	}
	defer cn.Close()
	evs, err := cn.st.Events(0, 0)
	if err != nil {
		return err
	}
	var pick *nc.Event
	for _, e := range evs {
		if e.Kind == nc.EventFile && cn.c.GroupName(e.Group) == c.Group && (c.Name == "" || e.Text == c.Name) {
			pick = e
		}
	}
	if pick == nil {
		if c.Name != "" {
			return fmt.Errorf("no file named %s in %s", termSafe(c.Name), termSafe(c.Group))
		}
		return fmt.Errorf("no file was sent to %s", termSafe(c.Group))
	}
	dir, err := downloadDir(c.DownloadDir, p)
	if err != nil {
		return err
	}
	return cn.lost(f.Server, saveFile(ctx, g, newOut(g, p), cn.c, pick, dir))
}

// fileContext allows a transfer of size bytes at 64 KiB/s on top of the
// usual operation time.
func fileContext(f *ClientFlags, size uint64) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 6*f.Timeout+30*time.Second+time.Duration(size/(64<<10))*time.Second)
}

// downloadDir is where received files go: flag, then
// $XDG_DOWNLOAD_DIR/qpchat, then ~/Downloads/qpchat, with the profile's
// name below it for profiles other than the default.
func downloadDir(flag string, p *ProfileFlags) (string, error) {
	if flag != "" {
		return flag, nil
	}
	base := os.Getenv("XDG_DOWNLOAD_DIR")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no home directory for downloads (set --download-dir): %w", err)
		}
		base = filepath.Join(home, "Downloads")
	}
	dir := filepath.Join(base, "qpchat")
	if p != nil && p.Profile != "" && p.Profile != "default" {
		dir = filepath.Join(dir, nc.SafeFileName(p.Profile))
	}
	return dir, nil
}

// saveFile downloads the file of e into dir and says where it went.
func saveFile(ctx context.Context, g *Globals, o *out, c *nc.Client, e *nc.Event, dir string) error {
	ref, err := nc.ParseFileRef(e.File)
	if err != nil {
		return fmt.Errorf("the file reference of %s is damaged", termSafe(e.Text))
	}
	group := c.GroupName(e.Group)
	bar := newProgress(g, "receiving "+termSafe(ref.Name))
	path, err := c.DownloadFile(ctx, ref, dir, bar.update)
	bar.done()
	if err != nil {
		if errors.Is(err, nc.ErrFileTampered) {
			obj := map[string]any{"event": "refused", "group": group, "sender": e.Sender, "file": ref.Name, "size": ref.Size, "error": err.Error()}
			o.emit(obj, "[%s] REFUSED the file %s from %s: %s; nothing was saved", termSafe(group), termSafe(ref.Name), termSafe(e.Sender), err)
			return nil
		}
		return fmt.Errorf("saving %s from %s: %w", termSafe(ref.Name), termSafe(e.Sender), err)
	}
	emitSaved(o, group, e.Sender, ref.Name, ref.Size, path)
	return nil
}

// emitSaved prints that a received file was saved.
func emitSaved(o *out, group, sender, name string, size any, path string) {
	obj := map[string]any{"event": "saved", "group": group, "sender": sender, "file": name, "size": size, "path": path}
	o.emit(obj, "[%s] saved %s from %s to %s", termSafe(group), termSafe(name), termSafe(sender), termSafe(path))
}

// humanBytes formats a size.
func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// progress draws a progress line on a terminal's stderr for transfers
// above 1 MiB; elsewhere it does nothing.
type progress struct {
	w     io.Writer
	what  string
	last  time.Time
	drawn bool
}

func newProgress(g *Globals, what string) *progress {
	p := &progress{what: what}
	if f, ok := g.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.w = f
	}
	return p
}

func (p *progress) update(done, total uint64) {
	if p.w == nil || total <= 1<<20 || (time.Since(p.last) < 100*time.Millisecond && done < total) {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "\r%s: %s of %s (%d%%)\x1b[K", p.what, humanBytes(done), humanBytes(total), done*100/total)
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprint(p.w, "\n")
	}
}
