package gitops

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"

	"github.com/runway-cd/runway/internal/manifest"
)

// gitCLI runs git in dir as "a person" and returns its trimmed output.
func gitCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=A person", "GIT_AUTHOR_EMAIL=person@localhost",
		"GIT_COMMITTER_NAME=A person", "GIT_COMMITTER_EMAIL=person@localhost",
		"GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// pushByHand clones bare with the git CLI, writes file, commits it and
// pushes, as a person editing the state repository would. It returns the
// commit.
func pushByHand(t *testing.T, bare, file, content string) string {
	t.Helper()
	work := t.TempDir()
	gitCLI(t, work, "clone", "-q", "--branch", "main", bare, "w")
	w := filepath.Join(work, "w")
	if err := os.WriteFile(filepath.Join(w, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCLI(t, w, "add", file)
	gitCLI(t, w, "commit", "-q", "-m", "by hand: "+file)
	gitCLI(t, w, "push", "-q", "origin", "main")
	return gitCLI(t, w, "rev-parse", "HEAD")
}

// setApp is the edit of one app's entry of production.json, made from the
// file at the head it lands on.
func setApp(name, tag string) Edit {
	return func(read func(string) ([]byte, error)) ([]Change, error) {
		data, err := read(manifest.ProductionPath)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", manifest.ProductionPath, err)
		}
		apps, _ := m["apps"].(map[string]any)
		apps[name] = map[string]any{"images": map[string]any{"code": map[string]any{"image": name, "image_tag": tag}}}
		out, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		return []Change{{Path: manifest.ProductionPath, Data: out}}, nil
	}
}

// productionApps returns the image tag of every app of bare's production
// manifest at main.
func productionApps(t *testing.T, bare string) map[string]string {
	t.Helper()
	repo, err := git.PlainOpen(bare)
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(remoteHead(t, bare)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.File(manifest.ProductionPath)
	if err != nil {
		t.Fatal(err)
	}
	data, err := f.Contents()
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	for name, a := range m.Apps {
		tags[name] = a.Images.Code.Tag
	}
	return tags
}

// linearHistory returns main's commits of bare, newest first, failing
// the test on a merge.
func linearHistory(t *testing.T, bare string) []string {
	t.Helper()
	repo, err := git.PlainOpen(bare)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	c, err := repo.CommitObject(plumbing.NewHash(remoteHead(t, bare)))
	for n := 0; err == nil && n < 1000; n++ {
		msgs = append(msgs, strings.TrimSpace(c.Message))
		if c.NumParents() > 1 {
			t.Fatalf("commit %s is a merge: history is not linear", c.Hash)
		}
		if c.NumParents() == 0 {
			return msgs
		}
		c, err = c.Parent(0)
	}
	t.Fatalf("walking history: %v", err)
	return nil
}

// TestUpdateKeepsHandMadeCommit: a person pushes between Update's fetch
// and its push (from inside the edit, on its first call); the push is
// rejected, the person's commit is kept and the edit is made again on top
// of it.
func TestUpdateKeepsHandMadeCommit(t *testing.T) {
	ctx := t.Context()
	bare := newStateRepo(t)
	r, err := Open(ctx, bare, filepath.Join(t.TempDir(), "clone"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	var byHand string
	edit := func(read func(string) ([]byte, error)) ([]Change, error) {
		calls++
		if calls == 1 {
			byHand = pushByHand(t, bare, "README.md", "edited by a person\n")
		}
		return setApp("web", "v1")(read)
	}
	sha, err := r.Update(ctx, "promote web v1", edit)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("edit called %d times, want 2 (once more on the person's head)", calls)
	}
	if got := remoteHead(t, bare); got != sha {
		t.Fatalf("remote at %s, Update returned %s", got, sha)
	}
	repo, err := git.PlainOpen(bare)
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ParentHashes) != 1 || c.ParentHashes[0].String() != byHand {
		t.Fatalf("Update's commit has parents %v, want the person's %s", c.ParentHashes, byHand)
	}
	f, err := c.File("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Contents(); got != "edited by a person\n" {
		t.Fatalf("README.md = %q: the person's change was overwritten", got)
	}
	if got := productionApps(t, bare); got["web"] != "v1" || got["postgres"] != "15" {
		t.Fatalf("production apps %v, want web v1 next to postgres 15", got)
	}
}

// TestUpdateRetriesServerSideRejection: another push lands after the
// remote advertised its head to Update's push, so git receive-pack itself
// refuses the update (report-status "ng refs/heads/main failed to update
// ref"), not go-git's own fast-forward check before sending. A pre-receive
// hook stands in for that other push: on its first run it moves main.
func TestUpdateRetriesServerSideRejection(t *testing.T) {
	ctx := t.Context()
	bare := newStateRepo(t)
	marker := filepath.Join(t.TempDir(), "moved")
	hook := `#!/bin/sh
# Another writer's push, landing while this one is being received.
[ -e '` + marker + `' ] && exit 0
touch '` + marker + `'
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
export GIT_AUTHOR_NAME='A person' GIT_AUTHOR_EMAIL=person@localhost GIT_COMMITTER_NAME='A person' GIT_COMMITTER_EMAIL=person@localhost
head=$(git rev-parse refs/heads/main) || exit 1
tree=$(git rev-parse "$head^{tree}") || exit 1
new=$(echo 'moved by another writer' | git commit-tree "$tree" -p "$head") || exit 1
git update-ref refs/heads/main "$new" "$head" || exit 1
echo "$new" > '` + marker + `'
`
	if err := os.MkdirAll(filepath.Join(bare, "hooks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bare, "hooks", "pre-receive"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, bare, filepath.Join(t.TempDir(), "clone"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	edit := func(read func(string) ([]byte, error)) ([]Change, error) {
		calls++
		return setApp("web", "v2")(read)
	}
	if _, err := r.Update(ctx, "promote web v2", edit); err != nil {
		t.Fatal(err)
	}
	moved, err := os.ReadFile(marker)
	if err != nil || len(strings.TrimSpace(string(moved))) != 40 {
		t.Fatalf("the hook did not move main (%q, %v): the test proves nothing", moved, err)
	}
	if calls != 2 {
		t.Errorf("edit called %d times, want 2", calls)
	}
	history := linearHistory(t, bare)
	if len(history) != 3 || history[0] != "promote web v2" || history[1] != "moved by another writer" {
		t.Fatalf("history %q, want Update's commit on top of the other writer's", history)
	}
}

// TestUpdateConcurrentClones: writers in separate clones of one remote
// each change their own app's entry of production.json at once; every
// change lands and the history stays linear.
func TestUpdateConcurrentClones(t *testing.T) {
	ctx := t.Context()
	bare := newStateRepo(t)
	// At most n-1 other writers can each beat one writer once, so n
	// writers fit in maxPushAttempts.
	const n = 6
	repos := make([]*Repo, n)
	for i := range repos {
		r, err := Open(ctx, bare, filepath.Join(t.TempDir(), fmt.Sprintf("clone%d", i)), "main", nil)
		if err != nil {
			t.Fatal(err)
		}
		repos[i] = r
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, r := range repos {
		wg.Go(func() {
			<-start
			app := fmt.Sprintf("app%d", i)
			if _, err := r.Update(ctx, "promote "+app, setApp(app, "v1")); err != nil {
				t.Errorf("%s: %v", app, err)
			}
		})
	}
	close(start)
	wg.Wait()
	got := productionApps(t, bare)
	for i := range n {
		if app := fmt.Sprintf("app%d", i); got[app] != "v1" {
			t.Errorf("production has %s at %q, want v1: a change was lost (%v)", app, got[app], got)
		}
	}
	if got["postgres"] != "15" {
		t.Errorf("postgres entry lost: %v", got)
	}
	if history := linearHistory(t, bare); len(history) != n+1 {
		t.Errorf("history %q has %d commits, want seed + %d", history, len(history), n)
	}
}

// TestUpdateEditErrorPushesNothing: an edit that fails ends Update with
// its error and leaves the remote as it was.
func TestUpdateEditErrorPushesNothing(t *testing.T) {
	ctx := t.Context()
	bare := newStateRepo(t)
	r, err := Open(ctx, bare, filepath.Join(t.TempDir(), "clone"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	before := remoteHead(t, bare)
	errBroken := errors.New("manifest entry broken")
	var calls int
	_, err = r.Update(ctx, "never", func(func(string) ([]byte, error)) ([]Change, error) {
		calls++
		return []Change{{Path: manifest.ProductionPath, Data: []byte("{}")}}, errBroken
	})
	if !errors.Is(err, errBroken) {
		t.Fatalf("Update = %v, want the edit's error", err)
	}
	if calls != 1 {
		t.Errorf("edit called %d times, want 1", calls)
	}
	if got := remoteHead(t, bare); got != before {
		t.Fatalf("remote moved from %s to %s after a failed edit", before, got)
	}
}

// TestUpdateGivesUpOnRemoteThatAlwaysMoves: when every attempt loses the
// race, Update stops after maxPushAttempts with an error that says so and
// wraps ErrRemoteMoved; the other writer's commits are all kept.
func TestUpdateGivesUpOnRemoteThatAlwaysMoves(t *testing.T) {
	ctx := t.Context()
	bare := newStateRepo(t)
	r, err := Open(ctx, bare, filepath.Join(t.TempDir(), "clone"), "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	_, err = r.Update(ctx, "promote web v3", func(read func(string) ([]byte, error)) ([]Change, error) {
		calls++
		plant(t, bare, planted{path: fmt.Sprintf("notes/%d.txt", calls), mode: filemode.Regular, data: "busy\n"})
		return setApp("web", "v3")(read)
	})
	if !errors.Is(err, ErrRemoteMoved) {
		t.Fatalf("Update = %v, want an error wrapping ErrRemoteMoved", err)
	}
	if want := fmt.Sprintf("gave up after %d attempts", maxPushAttempts); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if calls != maxPushAttempts {
		t.Errorf("edit called %d times, want %d", calls, maxPushAttempts)
	}
	history := linearHistory(t, bare)
	if len(history) != maxPushAttempts+1 {
		t.Fatalf("history %q: want the seed and the other writer's %d commits", history, maxPushAttempts)
	}
	for _, msg := range history {
		if msg == "promote web v3" {
			t.Fatalf("Update's commit landed although Update failed: %q", history)
		}
	}
}
