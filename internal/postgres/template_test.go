package postgres

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// templateConfig is testConfig with a template dir.
func templateConfig(t *testing.T, dir, templates string) Config {
	cfg := testConfig(t, dir)
	cfg.TemplateDir = templates
	// No refill of the template's ready copies outlives the test.
	t.Cleanup(func() { stopRefills(templates) })
	return cfg
}

// startFromTemplate starts the instance in dir from the templates in
// templates and removes it when the test ends.
func startFromTemplate(t *testing.T, dir, templates string) (*Instance, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	inst, err := Start(ctx, templateConfig(t, dir, templates), dir)
	if err == nil {
		t.Cleanup(func() {
			if err := inst.Remove(context.Background()); err != nil {
				t.Errorf("cleanup Remove: %v", err)
			}
		})
	}
	return inst, err
}

// finishedTemplates lists the finished templates in root (not their
// pools of ready copies).
func finishedTemplates(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.Contains(e.Name(), ".build.") && !strings.HasSuffix(e.Name(), readySuffix) {
			out = append(out, filepath.Join(root, e.Name()))
		}
	}
	return out
}

// TestStartFromTemplate starts two instances at once from one template dir:
// one template is built, and each copy gets a superuser password of its
// own, the template's working on neither.
func TestStartFromTemplate(t *testing.T) {
	ctx := t.Context()
	base := t.TempDir()
	templates := filepath.Join(base, "templates")
	dirs := []string{filepath.Join(base, "a"), filepath.Join(base, "b")}
	insts := make([]*Instance, len(dirs))
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for n, dir := range dirs {
		wg.Go(func() { insts[n], errs[n] = startFromTemplate(t, dir, templates) })
	}
	wg.Wait()
	for n, err := range errs {
		if err != nil {
			t.Fatalf("Start %d: %v", n, err)
		}
	}

	built := finishedTemplates(t, templates)
	if len(built) != 1 {
		t.Fatalf("templates %v, want exactly one", built)
	}
	tmpl, err := readTemplate(built[0])
	if err != nil {
		t.Fatalf("reading the template: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(templates, "*.build.*")); len(left) != 0 {
		t.Fatalf("unfinished builds left: %v", left)
	}
	if _, err := os.Stat(filepath.Join(tmpl.dataDir, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("the template was started (postmaster.pid: %v)", err)
	}

	var conns []Conn
	for n, inst := range insts {
		if _, err := os.Stat(filepath.Join(inst.secretsDir, initialPasswordFile)); !os.IsNotExist(err) {
			t.Fatalf("instance %d keeps the template's password: %v", n, err)
		}
		fi, err := os.Stat(inst.dataDir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Fatalf("instance %d data dir mode %v, want 0700", n, fi.Mode().Perm())
		}
		if os.Geteuid() == 0 && fi.Sys().(*syscall.Stat_t).Uid == 0 {
			t.Fatalf("instance %d data dir owned by root", n)
		}
		for _, pw := range []string{tmpl.password, insts[1-n].password} {
			err := connectAs(ctx, attempt{host: inst.sockDir, port: inst.Port(), user: superuser, password: pw, database: "postgres"})
			if sqlState(err) != "28P01" {
				t.Fatalf("instance %d with another's superuser password: err = %v, want 28P01", n, err)
			}
		}
		conn, err := inst.EnsureDatabase(ctx, "shop", "shop")
		if err != nil {
			t.Fatalf("EnsureDatabase on instance %d: %v", n, err)
		}
		if got := queryAsApp(t, conn); got != "pong" {
			t.Fatalf("instance %d query = %q", n, got)
		}
		conns = append(conns, conn)
	}
	if insts[0].password == insts[1].password || conns[0].Password == conns[1].Password {
		t.Fatalf("the two instances share passwords")
	}
	checkHBA(t, insts[0])

	// A restart keeps the cluster and the instance's own password.
	if err := insts[0].Stop(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := startFromTemplate(t, dirs[0], templates)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	conns[0].Port = again.Port()
	if got := queryAsApp(t, conns[0]); got != "pong" {
		t.Fatalf("query after restart = %q", got)
	}
}

// checkHBA fails the test if the instance's pg_hba.conf trusts anything.
func checkHBA(t *testing.T, inst *Instance) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(inst.dataDir, hbaFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "trust") || !strings.Contains(string(b), "local all runway scram-sha-256") {
		t.Fatalf("pg_hba.conf:\n%s", b)
	}
}

// TestTemplateInterrupted covers what killed processes leave: a template
// build that never finished (not used, removed by the next build), a copy
// that never finished (removed, copied again), and a copy started before
// its superuser's password was replaced, or replaced without the initial
// password being forgotten.
func TestTemplateInterrupted(t *testing.T) {
	ctx := t.Context()
	base := t.TempDir()
	templates := filepath.Join(base, "templates")
	dir := filepath.Join(base, "env")

	cfg, err := templateConfig(t, dir, templates).withDefaults(ctx)
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
	junk := filepath.Join(templates, key+".build.42", templateData)
	if err := os.MkdirAll(junk, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(junk, "PG_VERSION"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data.init.7", "base"), 0o700); err != nil {
		t.Fatal(err)
	}

	// Initialised from the template, but never started: the initial
	// password is pending.
	if _, err := superuserPassword(cfg, dir); err != nil {
		t.Fatal(err)
	}
	if err := prepareDir(dir, own, cfg.Logger); err != nil {
		t.Fatal(err)
	}
	if err := ensureInitialised(ctx, cfg, own, dir, "unused"); err != nil {
		t.Fatalf("ensureInitialised: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(templates, "*.build.*")); len(left) != 0 {
		t.Fatalf("unfinished template builds left: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "data.init*")); len(left) != 0 {
		t.Fatalf("unfinished copies left: %v", left)
	}
	tmpl, err := readTemplate(filepath.Join(templates, key))
	if err != nil {
		t.Fatal(err)
	}
	if initialPassword(cfg.SecretsDir) != tmpl.password {
		t.Fatalf("the copy's initial password is not pending")
	}

	inst, err := startFromTemplate(t, dir, templates)
	if err != nil {
		t.Fatalf("Start of the copy: %v", err)
	}
	if initialPassword(cfg.SecretsDir) != "" {
		t.Fatalf("the initial password is still pending after Start")
	}
	if err := connectAs(ctx, attempt{host: inst.sockDir, port: inst.Port(), user: superuser, password: tmpl.password, database: "postgres"}); sqlState(err) != "28P01" {
		t.Fatalf("the template's password after Start: err = %v, want 28P01", err)
	}
	if err := inst.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// Replaced, but the initial password not forgotten: Start falls back
	// to the instance's own.
	if err := storeInitialPassword(cfg.SecretsDir, tmpl.password); err != nil {
		t.Fatal(err)
	}
	inst, err = startFromTemplate(t, dir, templates)
	if err != nil {
		t.Fatalf("Start with a stale initial password: %v", err)
	}
	if initialPassword(cfg.SecretsDir) != "" {
		t.Fatalf("the stale initial password is still there after Start")
	}
	if _, err := inst.EnsureDatabase(ctx, "shop", "shop"); err != nil {
		t.Fatal(err)
	}
}

// TestCopyCluster checks both ways of copying a template: the same tree,
// modes, contents and owners.
func TestCopyCluster(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	own, err := resolveOwner(Config{})
	if err != nil {
		t.Fatal(err)
	}
	files := []struct {
		path string
		mode os.FileMode
		dir  bool
	}{
		{path: ".", mode: 0o700, dir: true},
		{path: "base", mode: 0o750, dir: true},
		{path: "base/1", mode: 0o700, dir: true},
		{path: "base/1/1249", mode: 0o600},
		{path: "PG_VERSION", mode: 0o640},
		{path: "empty", mode: 0o600},
	}
	for _, f := range files {
		p := filepath.Join(src, f.path)
		if f.dir {
			err = os.Mkdir(p, f.mode)
		} else {
			err = os.WriteFile(p, []byte(strings.Repeat(f.path, 1000)[:len(f.path)*len(f.path)]), f.mode)
		}
		if err == nil {
			err = os.Chmod(p, f.mode)
		}
		if err == nil {
			err = own.chown(p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("base/1", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := own.chown(filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		copy func(src, dst string) error
	}{
		{name: "go", copy: func(src, dst string) error { return copyTree(src, dst, own) }},
		{name: "cp", copy: func(src, dst string) error { return copyCluster(t.Context(), src, dst, own) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := filepath.Join(base, tt.name)
			if err := tt.copy(src, dst); err != nil {
				t.Fatalf("copy: %v", err)
			}
			if got, want := describeTree(t, dst), describeTree(t, src); got != want {
				t.Fatalf("copy:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// describeTree lists every file under root with its mode, owner and
// content or link target.
func describeTree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			fmt.Fprintf(&b, " -> %s", target)
		case fi.Mode().IsRegular():
			content, _ := os.ReadFile(path)
			fmt.Fprintf(&b, " %q", content)
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
