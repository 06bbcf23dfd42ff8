package gitops

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runway-cd/runway/internal/manifest"
)

// TestUpdateLandedThenMovedIsNotMadeAgain: the push lands,
// its answer is lost (receive-pack dies after the ref update), and another
// writer pushes on top before pushFailed fetches. pushFailed sees the
// branch neither at base nor at sha and calls it ErrRemoteMoved; Update
// then re-runs the edit on a head that already contains its own commit.
// For a promote-like edit (reads the staging manifest it deleted) that is
// an error: Update reports failure for a promotion that landed.
func TestUpdateLandedThenMovedIsNotMadeAgain(t *testing.T) {
	ctx := t.Context()
	bare := newStateRepo(t)
	r, err := Open(ctx, bare, filepath.Join(t.TempDir(), "clone"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	staging := manifest.StagingPath("v1")
	if _, err := r.Commit(ctx, "stage v1", Change{Path: staging, Data: []byte(prod)}); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "moved")
	hook := `#!/bin/sh
[ "$1" = committed ] || exit 0
[ -e '` + marker + `' ] && exit 0
touch '` + marker + `'
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
export GIT_AUTHOR_NAME='A person' GIT_AUTHOR_EMAIL=person@localhost GIT_COMMITTER_NAME='A person' GIT_COMMITTER_EMAIL=person@localhost
head=$(git rev-parse refs/heads/main) || exit 0
tree=$(git rev-parse "$head^{tree}") || exit 0
new=$(echo 'by hand, right after' | git commit-tree "$tree" -p "$head") || exit 0
git update-ref refs/heads/main "$new" "$head"
kill -9 $PPID
`
	_ = os.MkdirAll(filepath.Join(bare, "hooks"), 0o755)
	if err := os.WriteFile(filepath.Join(bare, "hooks", "reference-transaction"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	calls := 0
	promote := func(read func(string) ([]byte, error)) ([]Change, error) {
		calls++
		if _, err := read(staging); err != nil {
			return nil, err
		}
		return []Change{{Path: manifest.ProductionPath, Data: []byte(strings.Replace(prod, `"15"`, `"16"`, 1))}, {Path: staging, Delete: true}}, nil
	}
	_, err = r.Update(ctx, "promote v1", promote)
	if _, serr := os.Stat(marker); serr != nil {
		t.Fatal("the reference-transaction hook did not run: the test would prove nothing")
	}
	hist := linearHistory(t, bare)
	t.Logf("history %q, edit calls %d, err %v", hist, calls, err)
	landed := false
	for _, h := range hist {
		if h == "promote v1" {
			landed = true
		}
	}
	if !landed || err != nil {
		t.Fatalf("Update = %v with history %q: want the promotion landed once and reported so", err, hist)
	}
	if calls != 1 {
		t.Errorf("the edit was made %d times; a push that landed must not be made again", calls)
	}
}
