package postgres

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes (log records).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLogged starts the instance in dir from templates, logging into the
// test's output and into the returned buffer too.
func startLogged(t *testing.T, dir, templates string) (*Instance, *syncBuffer) {
	t.Helper()
	inst, logs, err := tryStartLogged(t, dir, templates)
	if err != nil {
		t.Fatalf("Start %s: %v", dir, err)
	}
	return inst, logs
}

// tryStartLogged is startLogged for other goroutines than the test's.
func tryStartLogged(t *testing.T, dir, templates string) (*Instance, *syncBuffer, error) {
	var logs syncBuffer
	cfg := templateConfig(t, dir, templates)
	cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &logs), nil))
	inst, err := Start(t.Context(), cfg, dir)
	if err != nil {
		return nil, &logs, err
	}
	t.Cleanup(func() {
		if err := inst.Remove(context.Background()); err != nil {
			t.Errorf("cleanup Remove: %v", err)
		}
	})
	return inst, &logs, nil
}

// templatePool is the pool of the template cfg's instances are copied from.
func templatePool(t *testing.T, dir, templates string) readyPool {
	t.Helper()
	cfg, err := templateConfig(t, dir, templates).withDefaults(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	own, err := resolveOwner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	key, err := templateKey(cfg, own)
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(templates)
	if err != nil {
		t.Fatal(err)
	}
	return poolOf(template{dataDir: filepath.Join(root, key, templateData)})
}

// readyNames lists the entries of p's dir.
func readyNames(t *testing.T, p readyPool) []string {
	t.Helper()
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestReadyCopies: the first use of a template fills its pool to
// readyCopies; a Start takes a ready copy (logged as such, gone from the
// pool) and the pool is refilled; with the pool empty a Start copies the
// template; two Starts at once each get a cluster of their own.
func TestReadyCopies(t *testing.T) {
	ctx := t.Context()
	base := t.TempDir()
	templates := filepath.Join(base, "templates")
	pool := templatePool(t, filepath.Join(base, "a"), templates)

	_, logs := startLogged(t, filepath.Join(base, "a"), templates)
	if !strings.Contains(logs.String(), "ready_copy=false") {
		t.Fatalf("first Start did not copy the template:\n%s", logs)
	}
	waitRefills(templates)
	if n := pool.count(); n != readyCopies {
		t.Fatalf("after first use: %d ready copies (%v), want %d", n, readyNames(t, pool), readyCopies)
	}
	for _, name := range readyNames(t, pool) {
		fi, err := os.Stat(filepath.Join(pool.dir, name, templatePassword))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("ready copy %s password file: %v %v", name, fi, err)
		}
	}

	before := readyNames(t, pool)
	b, logs := startLogged(t, filepath.Join(base, "b"), templates)
	if !strings.Contains(logs.String(), "ready_copy=true") {
		t.Fatalf("Start with a full pool did not take a ready copy:\n%s", logs)
	}
	gone := 0
	for _, name := range before {
		if _, err := os.Stat(filepath.Join(pool.dir, name)); os.IsNotExist(err) {
			gone++
		}
	}
	if gone != 1 {
		t.Fatalf("%d of the ready copies %v gone after one Start, want 1", gone, before)
	}
	// Owned as a copy is: as the template's cluster.
	tfi, err := os.Stat(filepath.Join(pool.template, templateData))
	if err != nil {
		t.Fatal(err)
	}
	bfi, err := os.Stat(b.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	tst, bst := tfi.Sys().(*syscall.Stat_t), bfi.Sys().(*syscall.Stat_t)
	if tst.Uid != bst.Uid || tst.Gid != bst.Gid || bfi.Mode().Perm() != 0o700 {
		t.Fatalf("taken cluster %v %d:%d, template's %d:%d", bfi.Mode(), bst.Uid, bst.Gid, tst.Uid, tst.Gid)
	}
	if os.Geteuid() == 0 && bst.Uid == 0 {
		t.Fatal("taken cluster owned by root")
	}
	conn, err := b.EnsureDatabase(ctx, "shop", "shop")
	if err != nil {
		t.Fatal(err)
	}
	if got := queryAsApp(t, conn); got != "pong" {
		t.Fatalf("query = %q", got)
	}
	waitRefills(templates)
	if n := pool.count(); n != readyCopies {
		t.Fatalf("after refill: %d ready copies, want %d", n, readyCopies)
	}

	// Two Starts at once take the two copies (or one copies the template
	// if another took first): each its own cluster.
	dirs := []string{filepath.Join(base, "c"), filepath.Join(base, "d")}
	insts := make([]*Instance, len(dirs))
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for n, dir := range dirs {
		wg.Go(func() { insts[n], _, errs[n] = tryStartLogged(t, dir, templates) })
	}
	wg.Wait()
	for n, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Start %d: %v", n, err)
		}
	}
	for n, inst := range insts {
		conn, err := inst.EnsureDatabase(ctx, "shop", "shop")
		if err != nil {
			t.Fatalf("EnsureDatabase on instance %d: %v", n, err)
		}
		if got := queryAsApp(t, conn); got != "pong" {
			t.Fatalf("instance %d query = %q", n, got)
		}
	}
	if insts[0].dataDir == insts[1].dataDir || insts[0].PID() == insts[1].PID() {
		t.Fatalf("the two instances share a cluster")
	}

	// An empty pool: the Start copies the template.
	stopRefills(templates)
	if err := os.RemoveAll(pool.dir); err != nil {
		t.Fatal(err)
	}
	_, logs = startLogged(t, filepath.Join(base, "e"), templates)
	if !strings.Contains(logs.String(), "ready_copy=false") {
		t.Fatalf("Start with an empty pool did not copy the template:\n%s", logs)
	}
	waitRefills(templates)
	if n := pool.count(); n != readyCopies {
		t.Fatalf("after refilling an emptied pool: %d ready copies, want %d", n, readyCopies)
	}
}

// fakePool makes a pool of n fake ready copies, and a .tmp one.
func fakePool(t *testing.T, n int) readyPool {
	t.Helper()
	return fakePoolIn(t, t.TempDir(), n)
}

func fakePoolIn(t *testing.T, base string, n int) readyPool {
	t.Helper()
	p := poolOf(template{dataDir: filepath.Join(base, "pg-key", templateData)})
	for i := range n + 1 {
		name := fmt.Sprintf("copy%d", i)
		if i == n {
			name = "unfinished" + readyTmp
		}
		data := filepath.Join(p.dir, name, templateData)
		if err := os.MkdirAll(data, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "PG_VERSION"), []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.dir, name, templatePassword), []byte("pw-"+name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestReadyTakeRace: of many takers at once, each copy goes to one, with
// its own password; a .tmp copy goes to none.
func TestReadyTakeRace(t *testing.T) {
	const copies, takers = 3, 12
	p := fakePool(t, copies)
	cfg, err := testConfig(t, p.dir).withDefaults(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var wg sync.WaitGroup
	passwords := make([]string, takers)
	for i := range takers {
		wg.Go(func() { passwords[i], _ = p.take(cfg, filepath.Join(out, fmt.Sprintf("staging%d", i))) })
	}
	wg.Wait()
	got := map[string]bool{}
	for i, pw := range passwords {
		if pw == "" {
			continue
		}
		if got[pw] {
			t.Fatalf("copy with password %s taken twice", pw)
		}
		got[pw] = true
		b, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("staging%d", i), "PG_VERSION"))
		if err != nil || "pw-"+string(b) != pw {
			t.Fatalf("taker %d got %q with password %s: %v", i, b, pw, err)
		}
	}
	if len(got) != copies {
		t.Fatalf("%d copies taken (%v), want %d", len(got), got, copies)
	}
	if got["pw-unfinished"+readyTmp] {
		t.Fatal("an unfinished copy was taken")
	}
	if names := readyNames(t, p); len(names) != 1 || names[0] != "unfinished"+readyTmp {
		t.Fatalf("pool after the takes: %v", names)
	}
	if _, ok := p.take(cfg, filepath.Join(out, "more")); ok {
		t.Fatal("took from a pool holding only an unfinished copy")
	}
}

// TestReadyTmpRemoved: a refill removes what an interrupted refill left
// (a .tmp copy) and what a taker killed after its rename left (a copy
// without its cluster), and makes complete copies, never the .tmp.
func TestReadyTmpRemoved(t *testing.T) {
	base := t.TempDir()
	templates := filepath.Join(base, "templates")
	startLogged(t, filepath.Join(base, "a"), templates)
	stopRefills(templates)
	pool := templatePool(t, filepath.Join(base, "a"), templates)
	if err := os.RemoveAll(pool.dir); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(pool.dir, "deadbeef"+readyTmp)
	if err := os.MkdirAll(filepath.Join(tmp, templateData), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, templateData, "PG_VERSION"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, templatePassword), []byte("junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	taken := filepath.Join(pool.dir, "0123abcd")
	if err := os.MkdirAll(taken, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(taken, templatePassword), []byte("junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Never taken: the Start copies the template.
	_, logs := startLogged(t, filepath.Join(base, "b"), templates)
	if !strings.Contains(logs.String(), "ready_copy=false") {
		t.Fatalf("Start took from a pool holding only leftovers:\n%s", logs)
	}
	waitRefills(templates)
	for _, left := range []string{tmp, taken} {
		if _, err := os.Stat(left); !os.IsNotExist(err) {
			t.Fatalf("leftover %s still there: %v", left, err)
		}
	}
	if n := pool.count(); n != readyCopies {
		t.Fatalf("%d ready copies (%v), want %d", n, readyNames(t, pool), readyCopies)
	}
}

// TestReadyTemplateGone: a refill stops when its template is gone.
func TestReadyTemplateGone(t *testing.T) {
	p := fakePool(t, 0)
	cfg, err := testConfig(t, p.dir).withDefaults(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	p.refill(t.Context(), cfg, owner{})
	if _, err := os.Stat(filepath.Join(p.dir, "unfinished"+readyTmp)); err != nil {
		t.Fatalf("a refill without a template touched the pool: %v", err)
	}
	if n := p.count(); n != 0 {
		t.Fatalf("%d ready copies without a template", n)
	}
}

// TestReadyCrossDevice: a pool on another file system than the instance
// dir is not taken from (the rename fails with EXDEV), logged once, and
// given up.
func TestReadyCrossDevice(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "runway-ready-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	out := t.TempDir()
	var a, b syscall.Stat_t
	if syscall.Stat(shm, &a) != nil || syscall.Stat(out, &b) != nil || a.Dev == b.Dev {
		t.Skip("/dev/shm is on the file system of the temp dir")
	}
	p := fakePoolIn(t, shm, 2)
	t.Cleanup(func() { crossDevice.Delete(p.dir) })
	var logs syncBuffer
	cfg, err := Config{SecretsDir: filepath.Join(out, "secrets"), Logger: slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &logs), nil))}.withDefaults(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, ok := p.take(cfg, filepath.Join(out, fmt.Sprintf("staging%d", i))); ok {
			t.Fatal("took a copy across file systems")
		}
	}
	if n := strings.Count(logs.String(), "another file system"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, logs.String())
	}
	if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
		t.Fatalf("the unusable pool is still there: %v", err)
	}
	startRefill(cfg, owner{}, p)
	waitRefills(shm)
	if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
		t.Fatalf("the unusable pool was refilled: %v", err)
	}
}
