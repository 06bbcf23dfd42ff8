package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/rollout"
)

// Rollouts checks rollout.Store (checkpoints and app records) on stores
// from fresh, each new and empty.
func Rollouts[S rollout.Store](t *testing.T, fresh func(t *testing.T) S) {
	runTests(t, fresh, func(s S) rollout.Store { return s }, rolloutTests)
}

// entry is a manifest entry of app at version.
func entry(app, version string) *manifest.App {
	return &manifest.App{
		Images: manifest.Images{Code: manifest.Image{Image: "registry.example/" + app, Tag: version}},
		Deploy: manifest.Deploy{Revision: "rev-" + version},
	}
}

// checkpoint is a running canary of app in env, started at started.
func checkpoint(env, app, canary string, started int) rollout.Checkpoint {
	return rollout.Checkpoint{
		Status: rollout.Status{
			Env: env, App: app, StableVersion: "v1", CanaryVersion: canary, Phase: "Progressing",
			Step: 2, Steps: 4, Weight: 40, Message: "paused at 40%", Started: at(started),
			Analyses: []rollout.Run{{Name: app + "-" + canary + "-1", Phase: "Successful", Reason: "ok"}},
		},
		Workflow: "wf-" + canary, StableEntry: entry(app, "v1"),
		Runs: 3, StepRun: app + "-" + canary + "-3", PauseStarted: at(started + 1),
	}
}

// finished is cp ended at cp.Started plus n seconds.
func finished(cp rollout.Checkpoint, n int) rollout.Checkpoint {
	cp.Phase, cp.Finished = "Healthy", cp.Started.Add(at(n).Sub(t0))
	return cp
}

// canaries is the canary versions of cps in order.
func canaries(cps []rollout.Checkpoint) []string {
	out := []string{}
	for _, cp := range cps {
		out = append(out, cp.Env+"/"+cp.App+"/"+cp.CanaryVersion)
	}
	return out
}

// wantUnfinished fails t unless the unfinished rollouts of app in env are
// want, in order.
func wantUnfinished(t *testing.T, s rollout.Store, env, app string, want ...rollout.Checkpoint) {
	t.Helper()
	got, err := s.UnfinishedRollouts(t.Context(), env, app)
	if err != nil {
		t.Fatalf("UnfinishedRollouts(%q, %q): %v", env, app, err)
	}
	if len(got) != len(want) {
		t.Fatalf("UnfinishedRollouts(%q, %q) = %q, want %q", env, app, canaries(got), canaries(want))
	}
	for i := range got {
		if !sameJSON(got[i], want[i]) {
			t.Errorf("UnfinishedRollouts(%q, %q)[%d] =\n%s\nwant\n%s", env, app, i, jsonOf(got[i]), jsonOf(want[i]))
		}
	}
}

// wantApp fails t unless the record of want.Env, want.App is want.
func wantApp(t *testing.T, s rollout.Store, want rollout.AppRecord) {
	t.Helper()
	got, err := s.GetApp(t.Context(), want.Env, want.App)
	if err != nil {
		t.Fatalf("GetApp(%q, %q): %v", want.Env, want.App, err)
	}
	if !sameJSON(got, want) {
		t.Errorf("GetApp(%q, %q) =\n%s\nwant\n%s", want.Env, want.App, jsonOf(got), jsonOf(want))
	}
}

// wantNoApp fails t unless app in env has no record.
func wantNoApp(t *testing.T, s rollout.Store, env, app string) {
	t.Helper()
	if got, err := s.GetApp(t.Context(), env, app); !errors.Is(err, rollout.ErrAppNotFound) {
		t.Errorf("GetApp(%q, %q) = %+v, %v; want rollout.ErrAppNotFound", env, app, got, err)
	}
}

var rolloutTests = []test[rollout.Store]{
	{"an empty store has no rollouts and no apps", func(t *testing.T, s rollout.Store) {
		wantUnfinished(t, s, "production", "web")
		all, err := s.ListRollouts(t.Context(), 10)
		if err != nil || len(all) != 0 {
			t.Errorf("ListRollouts = %q, %v; want none", canaries(all), err)
		}
		wantNoApp(t, s, "production", "web")
	}},
	{"a checkpoint is saved, and replaced per env, app and canary", func(t *testing.T, s rollout.Store) {
		cp := checkpoint("production", "web", "v2", 0)
		if err := s.SaveRollout(t.Context(), cp); err != nil {
			t.Fatal(err)
		}
		wantUnfinished(t, s, "production", "web", cp)
		cp.Step, cp.Weight, cp.Runs, cp.Aborting = 3, 60, 4, "analysis failed"
		cp.Analyses = append(cp.Analyses, rollout.Run{Name: "web-v2-4", Phase: "Failed", Reason: "too many errors"})
		if err := s.SaveRollout(t.Context(), cp); err != nil {
			t.Fatal(err)
		}
		wantUnfinished(t, s, "production", "web", cp)
		all, err := s.ListRollouts(t.Context(), 10)
		if err != nil || len(all) != 1 {
			t.Errorf("after a replace ListRollouts = %q, %v; want one", canaries(all), err)
		}
	}},
	{"unfinished rollouts: of that env and app only, oldest first", func(t *testing.T, s rollout.Store) {
		v3, v2 := checkpoint("production", "web", "v3", 5), checkpoint("production", "web", "v2", 1)
		v4done := finished(checkpoint("production", "web", "v4", 7), 9)
		for _, cp := range []rollout.Checkpoint{
			v3, v4done, v2,
			checkpoint("production", "api", "v2", 2),
			checkpoint("staging", "web", "v2", 3),
		} {
			if err := s.SaveRollout(t.Context(), cp); err != nil {
				t.Fatal(err)
			}
		}
		wantUnfinished(t, s, "production", "web", v2, v3)
		// Finishing one removes it; the others stay.
		if err := s.SaveRollout(t.Context(), finished(v2, 8)); err != nil {
			t.Fatal(err)
		}
		wantUnfinished(t, s, "production", "web", v3)
		wantUnfinished(t, s, "production", "nope")
	}},
	{"list rollouts: newest first, finished too, at most limit", func(t *testing.T, s rollout.Store) {
		for _, cp := range []rollout.Checkpoint{
			checkpoint("production", "web", "v2", 1),
			finished(checkpoint("production", "web", "v3", 3), 4),
			checkpoint("production", "api", "v7", 2),
		} {
			if err := s.SaveRollout(t.Context(), cp); err != nil {
				t.Fatal(err)
			}
		}
		for _, tt := range []struct {
			limit int
			want  []string
		}{
			{limit: 10, want: []string{"production/web/v3", "production/api/v7", "production/web/v2"}},
			{limit: 2, want: []string{"production/web/v3", "production/api/v7"}},
			{limit: 1, want: []string{"production/web/v3"}},
		} {
			all, err := s.ListRollouts(t.Context(), tt.limit)
			if err != nil || !reflect.DeepEqual(canaries(all), tt.want) {
				t.Errorf("ListRollouts(%d) = %q, %v; want %q", tt.limit, canaries(all), err, tt.want)
			}
		}
		// The same canary rolled out again lists by its new start.
		again := checkpoint("production", "web", "v2", 5)
		if err := s.SaveRollout(t.Context(), again); err != nil {
			t.Fatal(err)
		}
		all, err := s.ListRollouts(t.Context(), 10)
		want := []string{"production/web/v2", "production/web/v3", "production/api/v7"}
		if err != nil || !reflect.DeepEqual(canaries(all), want) {
			t.Errorf("after v2 rolled out again ListRollouts = %q, %v; want %q", canaries(all), err, want)
		}
		if len(all) > 0 && !sameJSON(all[0], again) {
			t.Errorf("the rollout again reads back as\n%s\nwant\n%s", jsonOf(all[0]), jsonOf(again))
		}
	}},
	{"an app record is saved, and replaced per env and app", func(t *testing.T, s rollout.Store) {
		rec := rollout.AppRecord{Env: "production", App: "web", StableVersion: "v1", StableEntry: entry("web", "v1"), Updated: at(0)}
		if err := s.SaveApp(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
		wantApp(t, s, rec)
		wantNoApp(t, s, "production", "api")
		wantNoApp(t, s, "staging", "web")
		other := []rollout.AppRecord{
			{Env: "production", App: "api", StableVersion: "v9", Updated: at(1)},
			{Env: "staging", App: "web", StableVersion: "v5", StableEntry: entry("web", "v5"), Updated: at(2)},
		}
		for _, o := range other {
			if err := s.SaveApp(t.Context(), o); err != nil {
				t.Fatal(err)
			}
		}
		rec.StableVersion, rec.StableEntry, rec.Updated = "v2", entry("web", "v2"), at(3)
		if err := s.SaveApp(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
		wantApp(t, s, rec)
		for _, o := range other {
			wantApp(t, s, o)
		}
		// No entry is kept as none.
		rec.StableVersion, rec.StableEntry = "", nil
		if err := s.SaveApp(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
		wantApp(t, s, rec)
	}},
	{"hostile strings are kept exactly", func(t *testing.T, s rollout.Store) {
		var cps []rollout.Checkpoint
		var recs []rollout.AppRecord
		for i, key := range hostileKeys {
			cp := checkpoint(key, key, key, i)
			cp.Message, cp.Aborting = hostileValue, key
			cps = append(cps, cp)
			recs = append(recs, rollout.AppRecord{Env: key, App: key, StableVersion: key, StableEntry: entry(key, key), Updated: at(i)})
			if err := s.SaveRollout(t.Context(), cp); err != nil {
				t.Fatalf("SaveRollout(%q): %v", key, err)
			}
			if err := s.SaveApp(t.Context(), recs[i]); err != nil {
				t.Fatalf("SaveApp(%q): %v", key, err)
			}
		}
		for i, key := range hostileKeys {
			wantUnfinished(t, s, key, key, cps[i])
			wantApp(t, s, recs[i])
		}
		wantNoApp(t, s, "%", "%")
	}},
	{"concurrent writers of different keys lose nothing", func(t *testing.T, s rollout.Store) {
		parallel(t, writers, func(i int) error {
			app := fmt.Sprintf("app-%d", i)
			for j := range writes {
				if err := s.SaveRollout(t.Context(), checkpoint("production", app, fmt.Sprintf("v%d", j), j)); err != nil {
					return err
				}
				if err := s.SaveApp(t.Context(), rollout.AppRecord{Env: fmt.Sprintf("env-%d", j), App: app, StableVersion: "v1", Updated: at(j)}); err != nil {
					return err
				}
			}
			return nil
		})
		all, err := s.ListRollouts(t.Context(), writers*writes+1)
		if err != nil || len(all) != writers*writes {
			t.Fatalf("ListRollouts = %d rollouts, %v; want %d", len(all), err, writers*writes)
		}
		for i := range writers {
			app := fmt.Sprintf("app-%d", i)
			var want []rollout.Checkpoint
			for j := range writes {
				want = append(want, checkpoint("production", app, fmt.Sprintf("v%d", j), j))
				wantApp(t, s, rollout.AppRecord{Env: fmt.Sprintf("env-%d", j), App: app, StableVersion: "v1", Updated: at(j)})
			}
			wantUnfinished(t, s, "production", app, want...)
		}
	}},
	{"concurrent writers of one key: one whole write wins", func(t *testing.T, s rollout.Store) {
		cpOf := func(i int) rollout.Checkpoint {
			cp := checkpoint("production", "web", "v2", 0)
			cp.Step, cp.Weight, cp.Message, cp.StepRun = i, i*10, fmt.Sprintf("writer %d", i), fmt.Sprintf("run-%d", i)
			return cp
		}
		recOf := func(i int) rollout.AppRecord {
			v := fmt.Sprintf("v%d", i)
			return rollout.AppRecord{Env: "production", App: "web", StableVersion: v, StableEntry: entry("web", v), Updated: at(i)}
		}
		parallel(t, writers, func(i int) error {
			for range writes {
				if err := s.SaveRollout(t.Context(), cpOf(i)); err != nil {
					return err
				}
				if err := s.SaveApp(t.Context(), recOf(i)); err != nil {
					return err
				}
			}
			return nil
		})
		cps, err := s.UnfinishedRollouts(t.Context(), "production", "web")
		if err != nil || len(cps) != 1 {
			t.Fatalf("UnfinishedRollouts = %q, %v; want one", canaries(cps), err)
		}
		rec, err := s.GetApp(t.Context(), "production", "web")
		if err != nil {
			t.Fatal(err)
		}
		cpOK, recOK := false, false
		for i := range writers {
			cpOK = cpOK || sameJSON(cps[0], cpOf(i))
			recOK = recOK || sameJSON(rec, recOf(i))
		}
		if !cpOK {
			t.Errorf("after concurrent writes the checkpoint is %s, not any one writer's", jsonOf(cps[0]))
		}
		if !recOK {
			t.Errorf("after concurrent writes the app record is %s, not any one writer's", jsonOf(rec))
		}
		if err := s.SaveApp(t.Context(), recOf(writers)); err != nil {
			t.Fatal(err)
		}
		wantApp(t, s, recOf(writers))
	}},
	{"a cancelled context writes nothing", func(t *testing.T, s rollout.Store) {
		cp := checkpoint("production", "web", "v2", 0)
		wantCancelled(t, "SaveRollout", s.SaveRollout(cancelled(t), cp))
		wantUnfinished(t, s, "production", "web")
		rec := rollout.AppRecord{Env: "production", App: "web", StableVersion: "v1", Updated: at(0)}
		wantCancelled(t, "SaveApp", s.SaveApp(cancelled(t), rec))
		wantNoApp(t, s, "production", "web")
		if err := s.SaveApp(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
		changed := rec
		changed.StableVersion = "v2"
		wantCancelled(t, "SaveApp", s.SaveApp(cancelled(t), changed))
		wantApp(t, s, rec)
		_, err := s.GetApp(cancelled(t), "production", "web")
		wantCancelled(t, "GetApp", err)
		_, err = s.UnfinishedRollouts(cancelled(t), "production", "web")
		wantCancelled(t, "UnfinishedRollouts", err)
	}},
}

// sameJSON reports whether a and b encode to the same JSON. Rollout
// records hold manifest entries, whose decoded form keeps unknown fields
// in a way reflect.DeepEqual tells apart from a literal's; their JSON is
// what they are.
func sameJSON(a, b any) bool {
	return jsonOf(a) == jsonOf(b)
}

// jsonOf is v's JSON, for comparisons and messages.
func jsonOf(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<%T not encodable: %v>", v, err)
	}
	return string(data)
}
