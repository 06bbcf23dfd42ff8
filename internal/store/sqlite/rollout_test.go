package sqlite_test

import (
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/manifest"
	"github.com/runway-cd/runway/internal/rollout"
	"github.com/runway-cd/runway/internal/store/sqlite"
)

func TestRolloutCheckpoints(t *testing.T) {
	db, path := open(t)
	ctx := t.Context()
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	cp := func(canary string, started time.Time) rollout.Checkpoint {
		return rollout.Checkpoint{
			Status:      rollout.Status{Env: "production", App: "web", StableVersion: "v1", CanaryVersion: canary, Phase: rollout.Progressing, Step: 2, Weight: 40, Started: started},
			Workflow:    "wf-" + canary,
			StableEntry: &manifest.App{Images: manifest.Images{Code: manifest.Image{Image: "web", Tag: "v1"}}, Deploy: manifest.Deploy{Revision: "abc"}},
			Runs:        3, StepRun: "web-" + canary + "-step3-3", PauseStarted: started.Add(time.Second),
		}
	}
	older, newer := cp("v2", t0), cp("v3", t0.Add(time.Minute))
	for _, c := range []rollout.Checkpoint{newer, older} {
		if err := db.SaveRollout(ctx, c); err != nil {
			t.Fatalf("SaveRollout: %v", err)
		}
	}
	// Saving again updates the row.
	newer.Weight = 60
	if err := db.SaveRollout(ctx, newer); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	got, err := db.UnfinishedRollouts(ctx, "production", "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].CanaryVersion != "v2" || got[1].CanaryVersion != "v3" {
		t.Fatalf("unfinished = %+v, want v2 then v3", got)
	}
	g := got[1]
	if g.Weight != 60 || g.Step != 2 || g.Runs != 3 || g.StepRun != newer.StepRun || !g.PauseStarted.Equal(newer.PauseStarted) || g.StableEntry.Deploy.Revision != "abc" {
		t.Fatalf("checkpoint read back = %+v", g)
	}
	if other, err := db.UnfinishedRollouts(ctx, "production", "api"); err != nil || len(other) != 0 {
		t.Fatalf("another app's checkpoints = %+v, %v", other, err)
	}

	older.Finished = t0.Add(time.Hour)
	older.Phase = rollout.Healthy
	if err := db.SaveRollout(ctx, older); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.UnfinishedRollouts(ctx, "production", "web"); len(got) != 1 || got[0].CanaryVersion != "v3" {
		t.Fatalf("after v2 finished, unfinished = %+v", got)
	}
	all, err := db.ListRollouts(ctx, 10)
	if err != nil || len(all) != 2 || all[0].CanaryVersion != "v3" || all[1].Phase != rollout.Healthy {
		t.Fatalf("ListRollouts = %+v, %v", all, err)
	}

	// The same canary rolled out again ("rollout retry") lists by its new
	// start.
	again := cp("v2", t0.Add(2*time.Minute))
	if err := db.SaveRollout(ctx, again); err != nil {
		t.Fatal(err)
	}
	all, err = db.ListRollouts(ctx, 10)
	if err != nil || len(all) != 2 || all[0].CanaryVersion != "v2" || !all[0].Started.Equal(again.Started) {
		t.Fatalf("after v2 rolled out again, ListRollouts = %+v, %v", all, err)
	}
}
