package gitops

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/manifest"
)

func TestAdded(t *testing.T) {
	ctx := context.Background()
	r, err := Open(ctx, newStateRepo(t), filepath.Join(t.TempDir(), "clone"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	env := "v20260101000000"
	data := []byte(strings.Replace(prod, "production", env, 1))
	commit := func(msg string, c ...Change) string {
		t.Helper()
		sha, err := r.Commit(ctx, msg, c...)
		if err != nil {
			t.Fatal(err)
		}
		return sha
	}
	firstAdd := commit("add", Change{Path: manifest.StagingPath(env), Data: data})
	afterFirst := commit("other env", Change{Path: manifest.StagingPath("v2"), Data: []byte(strings.Replace(prod, "production", "v2", 1))})
	commit("delete", Change{Path: manifest.StagingPath(env), Delete: true})
	secondAdd := commit("add again", Change{Path: manifest.StagingPath(env), Data: data})
	head := commit("edit", Change{Path: manifest.StagingPath(env), Data: append(data, '\n')})

	tests := []struct {
		name      string
		revision  string
		path      string
		want      string // commit whose time is returned
		notExist  bool
		wantError bool
	}{
		{name: "counts from the latest addition, edits kept", revision: head, path: manifest.StagingPath(env), want: secondAdd},
		{name: "at an older revision", revision: afterFirst, path: manifest.StagingPath(env), want: firstAdd},
		{name: "file absent", revision: head, path: manifest.StagingPath("v9"), notExist: true},
		{name: "unknown revision", revision: strings.Repeat("1", 40), path: manifest.StagingPath(env), wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.addedBy(ctx, tt.revision, tt.path)
			switch {
			case tt.notExist:
				if !IsNotExist(err) {
					t.Fatalf("err = %v, want not-exist", err)
				}
				return
			case tt.wantError:
				if err == nil || IsNotExist(err) {
					t.Fatalf("err = %v, want a read error", err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if got.Hash.String() != tt.want {
				t.Fatalf("added by %.12s (%s), want %.12s", got.Hash, strings.TrimSpace(got.Message), tt.want)
			}
			when, err := r.Added(ctx, tt.revision, tt.path)
			if err != nil || !when.Equal(got.Committer.When) {
				t.Fatalf("Added = %s, %v; want the commit's time %s", when, err, got.Committer.When)
			}
		})
	}
}
