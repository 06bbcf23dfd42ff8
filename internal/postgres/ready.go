package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/runway-cd/runway/internal/atomicfile"
)

const (
	// readyCopies is how many complete copies of a template are kept
	// ready (warm spares), so that a new instance renames one into place
	// instead of copying the template (0.5–0.9 s, bound by file creation)
	// while it waits. Each costs the template's size on disk (~40–50 MB).
	readyCopies = 2
	// readySuffix names a template's pool of ready copies:
	// <TemplateDir>/<key>.ready/<random>/{data,password}.
	readySuffix = ".ready"
	// readyTmp ends the name of a ready copy being made; it is never taken
	// and the next refill removes it.
	readyTmp = ".tmp"
	// refillTimeout bounds one refill of a pool, copies included.
	refillTimeout = 2 * time.Minute
	// refillFailures bounds the failed copies of one refill.
	refillFailures = 3
	// refillDelay is how long a refill waits before copying, so that its
	// copy does not compete for the disk with the rest of the Start that
	// took a copy (the server's start, the first database); a second
	// Start within it takes the pool's other copy.
	refillDelay = time.Second
	// refillRounds bounds how often a refill starts over because copies
	// were taken while it ran.
	refillRounds = 4
)

// readyPool is a template's pool of ready copies, beside the template:
// dir is <TemplateDir>/<key>.ready, lock <key>.ready.lock (held by the
// process refilling it; takers never take it).
type readyPool struct {
	template string // <TemplateDir>/<key>
	dir      string
	lock     string
}

func poolOf(t template) readyPool {
	tdir := filepath.Dir(t.dataDir)
	return readyPool{template: tdir, dir: tdir + readySuffix, lock: tdir + readySuffix + ".lock"}
}

// refills tracks the refills running in this process, one per pool at
// most. crossDevice holds the pools whose copies cannot be renamed into
// instance dirs (EXDEV): they are neither taken from nor refilled again.
var (
	refills = struct {
		sync.Mutex
		running map[string]*refillRun
	}{running: map[string]*refillRun{}}
	crossDevice sync.Map
)

// refillRun is one pool's refill goroutine; again asks it for another
// round (a copy was taken after it last counted).
type refillRun struct {
	done   chan struct{}
	cancel context.CancelFunc
	again  bool
}

// take moves a ready copy's cluster to staging (which must not exist) and
// returns its superuser's password. Taking is a rename, so of two
// instances starting at once one gets a copy and the other's rename fails
// (ENOENT) and it tries the next. ok is false when there is none to take:
// the caller copies the template.
func (p readyPool) take(cfg Config, staging string) (password string, ok bool) {
	if _, off := crossDevice.Load(p.dir); off {
		return "", false
	}
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), readyTmp) {
			continue
		}
		copyDir := filepath.Join(p.dir, e.Name())
		pw, err := readPassword(filepath.Join(copyDir, templatePassword))
		if err != nil {
			continue // taken meanwhile, or not a ready copy
		}
		err = os.Rename(filepath.Join(copyDir, templateData), staging)
		if errors.Is(err, syscall.EXDEV) {
			if _, seen := crossDevice.LoadOrStore(p.dir, true); !seen {
				cfg.Logger.Warn("postgres: ready template copies are on another file system than the instance dirs; copying the template instead", "pool", p.dir, "instance", filepath.Dir(staging))
				_ = os.RemoveAll(p.dir)
			}
			return "", false
		}
		if err != nil {
			continue // another instance took it first
		}
		_ = os.RemoveAll(copyDir) // its password file; the refill removes it otherwise
		return pw, true
	}
	return "", false
}

// startRefill refills p in the background after refillDelay, unless this
// process already does (then that refill counts again before it ends). It
// never blocks.
func startRefill(cfg Config, own owner, p readyPool) {
	if _, off := crossDevice.Load(p.dir); off {
		return
	}
	refills.Lock()
	defer refills.Unlock()
	if r, ok := refills.running[p.dir]; ok {
		r.again = true
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), refillTimeout)
	r := &refillRun{done: make(chan struct{}), cancel: cancel}
	refills.running[p.dir] = r
	go func() {
		defer close(r.done)
		defer cancel()
		select {
		case <-time.After(refillDelay):
		case <-ctx.Done():
			refills.Lock()
			delete(refills.running, p.dir)
			refills.Unlock()
			return
		}
		for round := 0; ; round++ {
			p.refill(ctx, cfg, own)
			refills.Lock()
			if !r.again || round+1 >= refillRounds || ctx.Err() != nil {
				delete(refills.running, p.dir)
				refills.Unlock()
				return
			}
			r.again = false
			refills.Unlock()
		}
	}()
}

// refill makes ready copies until p holds readyCopies, taking turns on
// p's lock with other processes' refills. It first removes what interrupted refills
// and takes left (.tmp copies, copies whose cluster is gone), and stops
// when the template is gone or after refillFailures failed copies.
func (p readyPool) refill(ctx context.Context, cfg Config, own owner) {
	if _, err := os.Stat(p.template); err != nil {
		return
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		cfg.Logger.Warn("postgres: could not create the ready template copies dir", "dir", p.dir, "err", err)
		return
	}
	// Another process refilling p: wait for it, then count (it may have
	// counted before this process took its copy). Nothing else waits on
	// this lock, and ctx bounds the wait.
	unlock, err := lockFile(ctx, p.lock, refillTimeout)
	if err != nil {
		return
	}
	defer unlock()
	failures := 0
	for ctx.Err() == nil {
		n := p.tidy(cfg)
		if n >= readyCopies {
			return
		}
		tmpl, err := readTemplate(p.template)
		if err != nil {
			return // the template is gone
		}
		began := time.Now()
		name, err := p.make(ctx, own, tmpl)
		if err != nil {
			if ctx.Err() != nil {
				return // stopped, or out of time
			}
			failures++
			cfg.Logger.Warn("postgres: could not make a ready template copy", "pool", p.dir, "err", err)
			if failures >= refillFailures {
				return
			}
			continue
		}
		cfg.Logger.Debug("postgres: made a ready template copy", "copy", name, "took", time.Since(began).Round(time.Millisecond))
	}
}

// tidy removes the leftovers in p (the caller holds p's lock, so no other
// process is making a copy) and counts the ready copies.
func (p readyPool) tidy(cfg Config) int {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		path := filepath.Join(p.dir, e.Name())
		leftover := !e.IsDir() || strings.HasSuffix(e.Name(), readyTmp)
		if !leftover {
			if _, err := os.Stat(filepath.Join(path, templateData, "PG_VERSION")); err == nil {
				n++
				continue
			}
			leftover = true // taken, its password file left behind
		}
		if err := os.RemoveAll(path); err != nil {
			cfg.Logger.Warn("postgres: could not remove a leftover ready template copy yet", "dir", path, "err", err)
			continue
		}
		if strings.HasSuffix(e.Name(), readyTmp) {
			cfg.Logger.Info("postgres: removed an unfinished ready template copy", "dir", path)
		}
	}
	return n
}

// make copies tmpl into p/<random>.tmp/data with its password beside it,
// then renames it to p/<random>: a ready copy is complete or has .tmp.
func (p readyPool) make(ctx context.Context, own owner, tmpl template) (string, error) {
	raw := make([]byte, 8)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	final := filepath.Join(p.dir, hex.EncodeToString(raw))
	tmp := final + readyTmp
	fail := func(err error) (string, error) {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fail(err)
	}
	if err := atomicfile.Write(filepath.Join(tmp, templatePassword), []byte(tmpl.password+"\n"), secretFileMode); err != nil {
		return fail(err)
	}
	if err := copyCluster(ctx, tmpl.dataDir, filepath.Join(tmp, templateData), own); err != nil {
		return fail(err)
	}
	// The template may have gone while it was copied; then so does the copy.
	if cur, err := readTemplate(p.template); err != nil || cur.password != tmpl.password {
		return fail(fmt.Errorf("template %s changed while copied", p.template))
	}
	if err := os.Rename(tmp, final); err != nil {
		return fail(err)
	}
	return final, nil
}

// waitRefills waits for this process's refills of pools under
// templateDir; StopRefills cancels them first. Tests use them so that no
// refill outlives its test's temporary dirs.
func waitRefills(templateDir string) { endRefills(templateDir, false) }

// StopRefills ends this process's background refills of the ready copies
// of templates under templateDir (Config.TemplateDir) and waits for them:
// whoever is about to remove templateDir, such as a test's cleanup, calls
// it first, or a refill may still be writing there. An ended refill
// leaves at most a .tmp copy, removed by the next one.
func StopRefills(templateDir string) { endRefills(templateDir, true) }

func stopRefills(templateDir string) { StopRefills(templateDir) }

func endRefills(templateDir string, cancel bool) {
	root, err := filepath.Abs(templateDir)
	if err != nil {
		return
	}
	for {
		var r *refillRun
		refills.Lock()
		for dir, run := range refills.running {
			if strings.HasPrefix(dir, root+string(filepath.Separator)) {
				r = run
				break
			}
		}
		refills.Unlock()
		if r == nil {
			return
		}
		if cancel {
			r.cancel()
		}
		<-r.done
	}
}

// readyCount counts the ready copies in p (tests).
func (p readyPool) count() int {
	entries, _ := os.ReadDir(p.dir)
	n := 0
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), readyTmp) {
			if _, err := os.Stat(filepath.Join(p.dir, e.Name(), templateData)); err == nil {
				n++
			}
		}
	}
	return n
}
