package postgres

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkStart measures Start up to a server that accepts its
// superuser: "cold" initialises a fresh dir with initdb, "template" copies
// a template built beforehand, "floor" starts an initialised dir again (the
// bare start every environment pays anyway). Each case also reports ms/op,
// the figure the staging ready time is compared with.
func BenchmarkStart(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := b.TempDir()
	n := 0
	fresh := func() string {
		n++
		return filepath.Join(base, "env"+strconv.Itoa(n))
	}
	run := func(b *testing.B, cfg func(dir string) Config, dir func() string) {
		var total time.Duration
		for b.Loop() {
			d := dir()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			began := time.Now()
			inst, err := Start(ctx, cfg(d), d)
			total += time.Since(began)
			cancel()
			if err != nil {
				b.Fatalf("Start: %v", err)
			}
			b.StopTimer()
			if err := inst.Stop(context.Background()); err != nil {
				b.Fatalf("Stop: %v", err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/start")
	}
	plain := func(dir string) Config { return Config{SecretsDir: secretsFor(dir), Logger: quiet} }

	templates := filepath.Join(base, "templates")
	fromTemplate := func(dir string) Config {
		cfg := plain(dir)
		cfg.TemplateDir = templates
		return cfg
	}

	b.Run("cold", func(b *testing.B) { run(b, plain, fresh) })
	b.Run("template", func(b *testing.B) {
		dir := fresh() // builds the template
		inst, err := Start(b.Context(), fromTemplate(dir), dir)
		if err != nil {
			b.Fatal(err)
		}
		if err := inst.Stop(b.Context()); err != nil {
			b.Fatal(err)
		}
		run(b, fromTemplate, fresh)
	})
	b.Run("floor", func(b *testing.B) {
		dir := fresh()
		inst, err := Start(b.Context(), plain(dir), dir)
		if err != nil {
			b.Fatal(err)
		}
		if err := inst.Stop(b.Context()); err != nil {
			b.Fatal(err)
		}
		run(b, plain, func() string { return dir })
	})
}

// BenchmarkCopyCluster compares copyTree with cp -a (copyCluster) on a
// template.
func BenchmarkCopyCluster(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := b.TempDir()
	cfg, err := Config{SecretsDir: filepath.Join(base, "secrets"), Logger: quiet, TemplateDir: filepath.Join(base, "templates")}.withDefaults(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	own, err := resolveOwner(cfg)
	if err != nil {
		b.Fatal(err)
	}
	tmpl, err := ensureTemplate(b.Context(), cfg, own)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			n++
			if err := copyTree(tmpl.dataDir, filepath.Join(base, "go"+strconv.Itoa(n)), own); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cp", func(b *testing.B) {
		for b.Loop() {
			n++
			if err := copyCluster(b.Context(), tmpl.dataDir, filepath.Join(base, "cp"+strconv.Itoa(n)), own); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEnsureDatabase measures giving an app a new role and database
// (pg_hba.conf rewritten and reloaded included) on a running server.
func BenchmarkEnsureDatabase(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := filepath.Join(b.TempDir(), "env")
	inst, err := Start(b.Context(), Config{SecretsDir: secretsFor(dir), Logger: quiet}, dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = inst.Remove(context.Background()) })
	n := 0
	began := time.Now()
	for b.Loop() {
		n++
		name := "app" + strconv.Itoa(n)
		if _, err := inst.EnsureDatabase(b.Context(), name, name); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(began).Microseconds())/1000/float64(b.N), "ms/database")
}
