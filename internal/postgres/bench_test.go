package postgres

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkStart measures Start up to a server that accepts its
// superuser: "cold" initialises a fresh dir with initdb, "template" copies
// a template built beforehand, "ready" takes a ready copy of it (the pool
// refilled, untimed, after every Start), "floor" starts an initialised dir
// again (the bare start every environment pays anyway). Each case also reports ms/op,
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
			c := cfg(d)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			began := time.Now()
			inst, err := Start(ctx, c, d)
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
	b.Cleanup(func() { stopRefills(templates) })
	fromTemplate := func(dir string) Config {
		cfg := plain(dir)
		cfg.TemplateDir = templates
		cfg.noReadyCopies = true
		return cfg
	}
	fromReady := func(dir string) Config {
		cfg := plain(dir)
		cfg.TemplateDir = templates
		waitRefills(templates) // run's ms/start clock starts after cfg
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
	b.Run("ready", func(b *testing.B) {
		dir := fresh() // fills the pool
		inst, err := Start(b.Context(), fromReady(dir), dir)
		if err != nil {
			b.Fatal(err)
		}
		if err := inst.Stop(b.Context()); err != nil {
			b.Fatal(err)
		}
		run(b, fromReady, fresh)
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
	cfg, err := Config{SecretsDir: filepath.Join(base, "secrets"), Logger: quiet, TemplateDir: filepath.Join(base, "templates"), noReadyCopies: true}.withDefaults(b.Context())
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
// (pg_hba.conf rewritten and reloaded included) as the first app of a
// cluster copied from a template, alternating the two ways in one run:
// "spare" takes the template's spare database (the first app of every new
// environment), "create" runs CREATE DATABASE (the spare dropped before the
// clock starts). "second" is a second app's database, created, in either.
// Starting and removing each instance is not timed.
func BenchmarkEnsureDatabase(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := b.TempDir()
	templates := filepath.Join(base, "templates")
	b.Cleanup(func() { stopRefills(templates) })
	cfg := func(dir string) Config {
		return Config{SecretsDir: secretsFor(dir), Logger: quiet, TemplateDir: templates}
	}
	var spare, create, second []time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		n++
		dir := filepath.Join(base, "env"+strconv.Itoa(n))
		inst, err := Start(b.Context(), cfg(dir), dir)
		if err != nil {
			b.Fatal(err)
		}
		useSpare := n%2 == 1
		if !useSpare {
			conn, err := inst.connect(b.Context(), "postgres")
			if err == nil {
				_, err = conn.Exec(b.Context(), "DROP DATABASE "+spareDatabase)
				_ = conn.Close(b.Context())
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		began := time.Now()
		if _, err := inst.EnsureDatabase(b.Context(), "app", "app"); err != nil {
			b.Fatal(err)
		}
		took := time.Since(began)
		if useSpare {
			spare = append(spare, took)
		} else {
			create = append(create, took)
		}
		began = time.Now()
		if _, err := inst.EnsureDatabase(b.Context(), "other", "other"); err != nil {
			b.Fatal(err)
		}
		second = append(second, time.Since(began))
		b.StopTimer()
		if err := inst.Remove(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"spare", spare}, {"create", create}, {"second", second}} {
		if len(m.ds) == 0 {
			continue
		}
		slices.Sort(m.ds)
		var sum time.Duration
		for _, d := range m.ds {
			sum += d
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(sum)/float64(len(m.ds)), "ms/"+m.name)
		b.ReportMetric(ms(m.ds[len(m.ds)/2]), "p50-ms/"+m.name)
		b.ReportMetric(ms(m.ds[len(m.ds)-1]), "max-ms/"+m.name)
	}
}

// BenchmarkFirstDatabase measures what the spare saves an environment end
// to end: Start from a template plus the first EnsureDatabase, alternating
// in one run a template with the spare database (as built) and one without
// (the same cluster with the spare dropped: the template before
// templateFormat 2), both copied at Start, and a third kind, "ready", that
// takes a ready copy of the template with the spare instead of copying it
// (the pool refilled, untimed, between Starts). The spare makes the copy
// larger (a database is some 300 files, 7.5 MB) and EnsureDatabase
// cheaper; "start" and "ensure" report the two parts, "total" their sum,
// each as a p50 in ms.
func BenchmarkFirstDatabase(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	base := b.TempDir()
	withSpare, withoutSpare := filepath.Join(base, "with"), filepath.Join(base, "without")
	b.Cleanup(func() { stopRefills(withSpare); stopRefills(withoutSpare) })
	cfg := func(dir, templates string) Config {
		return Config{SecretsDir: secretsFor(dir), Logger: quiet, TemplateDir: templates, noReadyCopies: true}
	}

	// The template without the spare: a copy of the one with it, the
	// spare dropped and the server shut down.
	dir := filepath.Join(base, "nospare")
	first := cfg(dir, withSpare)
	first.noReadyCopies = false // builds the template and fills its pool
	inst, err := Start(b.Context(), first, dir)
	if err != nil {
		b.Fatal(err)
	}
	conn, err := inst.connect(b.Context(), "postgres")
	if err == nil {
		_, err = conn.Exec(b.Context(), "DROP DATABASE "+spareDatabase)
		_ = conn.Close(b.Context())
	}
	if err == nil {
		err = inst.Stop(b.Context())
	}
	if err != nil {
		b.Fatal(err)
	}
	full, err := Config{}.withDefaults(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	own, err := resolveOwner(full)
	if err != nil {
		b.Fatal(err)
	}
	key, err := templateKey(full, own)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := filepath.Join(withoutSpare, key)
	if err := os.MkdirAll(tmpl, 0o700); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(inst.dataDir, filepath.Join(tmpl, templateData)); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmpl, templatePassword), []byte(inst.password+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}

	kinds := []struct {
		name, templates string
		ready           bool
		start, ensure   []time.Duration
	}{{name: "spare", templates: withSpare}, {name: "ready", templates: withSpare, ready: true}, {name: "nospare", templates: withoutSpare}}
	n := 0
	for b.Loop() {
		for k := range kinds {
			kind := &kinds[k]
			n++
			dir := filepath.Join(base, "env"+strconv.Itoa(n))
			c := cfg(dir, kind.templates)
			if kind.ready {
				b.StopTimer()
				c.noReadyCopies = false
				waitRefills(kind.templates) // the pool full, as between environments
				b.StartTimer()
			}
			began := time.Now()
			inst, err := Start(b.Context(), c, dir)
			if err != nil {
				b.Fatal(err)
			}
			started := time.Now()
			if _, err := inst.EnsureDatabase(b.Context(), "app", "app"); err != nil {
				b.Fatal(err)
			}
			kind.start = append(kind.start, started.Sub(began))
			kind.ensure = append(kind.ensure, time.Since(started))
			b.StopTimer()
			if err := inst.Remove(context.Background()); err != nil {
				b.Fatal(err)
			}
			if kind.ready {
				waitRefills(kind.templates) // not under the next kind's clock
			}
			b.StartTimer()
		}
	}
	p50 := func(ds []time.Duration) float64 {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return float64(ds[len(ds)/2].Microseconds()) / 1000
	}
	for _, kind := range kinds {
		total := make([]time.Duration, len(kind.start))
		for i := range total {
			total[i] = kind.start[i] + kind.ensure[i]
		}
		b.ReportMetric(p50(kind.start), "start-ms/"+kind.name)
		b.ReportMetric(p50(kind.ensure), "ensure-ms/"+kind.name)
		b.ReportMetric(p50(total), "total-ms/"+kind.name)
	}
}
