package gitops

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/runway-cd/runway/internal/manifest"
)

const prod = `{"envname":"production","apps":{"postgres":{"images":{"code":{"image":"postgres","image_tag":"15"}}}}}`

// newStateRepo makes a bare repository seeded with a production manifest
// and returns its URL.
func newStateRepo(t *testing.T) string {
	t.Helper()
	bare := filepath.Join(t.TempDir(), "state.git")
	if err := InitBare(bare, "main"); err != nil {
		t.Fatal(err)
	}
	files := fstest.MapFS{manifest.ProductionPath: {Data: []byte(prod)}, "README.md": {Data: []byte("state\n")}}
	if _, err := CommitDir(context.Background(), bare, "main", files, "seed"); err != nil {
		t.Fatal(err)
	}
	return bare
}

func TestCommitAndSnapshot(t *testing.T) {
	ctx := context.Background()
	url := newStateRepo(t)
	r, err := Open(ctx, url, filepath.Join(t.TempDir(), "clone"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	staging := strings.Replace(prod, "production", "v20260101000000", 1)
	tests := []struct {
		name     string
		changes  []Change
		wantEnvs []string
		invalid  []string
		newHead  bool
	}{
		{"add staging", []Change{{Path: manifest.StagingPath("v20260101000000"), Data: []byte(staging)}}, []string{"production", "v20260101000000"}, nil, true},
		{"same again is a no-op", []Change{{Path: manifest.StagingPath("v20260101000000"), Data: []byte(staging)}}, []string{"production", "v20260101000000"}, nil, false},
		{"invalid file is reported, not dropped silently", []Change{{Path: manifest.StagingPath("v2"), Data: []byte(`{"envname":`)}}, []string{"production", "v20260101000000"}, []string{"v2"}, true},
		{"mismatched envname", []Change{{Path: manifest.StagingPath("v2"), Data: []byte(strings.Replace(prod, "production", "v3", 1))}}, []string{"production", "v20260101000000"}, []string{"v2"}, true},
		{"delete", []Change{{Path: manifest.StagingPath("v20260101000000"), Delete: true}, {Path: manifest.StagingPath("v2"), Delete: true}}, []string{"production"}, nil, true},
		{"delete missing is a no-op", []Change{{Path: manifest.StagingPath("v20260101000000"), Delete: true}}, []string{"production"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := r.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			sha, err := r.Commit(ctx, tt.name, tt.changes...)
			if err != nil {
				t.Fatal(err)
			}
			if got := sha != before.Revision; got != tt.newHead {
				t.Fatalf("new commit = %v, want %v", got, tt.newHead)
			}
			s, err := r.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if s.Revision != sha {
				t.Fatalf("snapshot at %s, commit returned %s", s.Revision, sha)
			}
			if got := strings.Join(s.EnvNames(), ","); got != strings.Join(tt.wantEnvs, ",") {
				t.Fatalf("envs = %s, want %s", got, strings.Join(tt.wantEnvs, ","))
			}
			for _, env := range tt.invalid {
				if s.Invalid[env] == nil {
					t.Fatalf("env %s should be reported invalid", env)
				}
			}
			if len(s.Invalid) != len(tt.invalid) {
				t.Fatalf("invalid = %v, want %v", s.Invalid, tt.invalid)
			}
		})
	}
}

func TestCommitRetriesWhenRemoteMoved(t *testing.T) {
	ctx := context.Background()
	url := newStateRepo(t)
	a, err := Open(ctx, url, filepath.Join(t.TempDir(), "a"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, url, filepath.Join(t.TempDir(), "b"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []*Repo{a, b} {
		env := []string{"va", "vb"}[i]
		data := strings.Replace(prod, "production", env, 1)
		if _, err := r.Commit(ctx, "add "+env, Change{Path: manifest.StagingPath(env), Data: []byte(data)}); err != nil {
			t.Fatalf("commit from clone %d: %v", i, err)
		}
	}
	s, err := a.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.EnvNames(), ","); got != "production,va,vb" {
		t.Fatalf("envs = %s: a commit was lost", got)
	}
}

func TestCommitRefusesOtherPaths(t *testing.T) {
	ctx := context.Background()
	r, err := Open(ctx, newStateRepo(t), filepath.Join(t.TempDir(), "c"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"README.md", "../../etc/passwd", "apps/staging/manifests/../../../x.json"} {
		if _, err := r.Commit(ctx, "bad", Change{Path: p, Data: []byte("x")}); err == nil {
			t.Errorf("commit to %q succeeded", p)
		}
	}
}

func TestSnapshotFailsWhenRemoteIsGone(t *testing.T) {
	ctx := context.Background()
	url := newStateRepo(t)
	r, err := Open(ctx, url, filepath.Join(t.TempDir(), "d"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.url = filepath.Join(t.TempDir(), "missing.git")
	cfg, _ := r.repo.Config()
	cfg.Remotes["origin"].URLs = []string{r.url}
	if err := r.repo.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Snapshot(ctx); err == nil {
		t.Fatal("snapshot of an unreachable remote succeeded; the controller would act on stale absence")
	}
}
