package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/pipeline"
)

// Pipelines checks pipeline.Store and pipeline.VersionFinder on stores
// from fresh, each new and empty.
func Pipelines[S PipelineStore](t *testing.T, fresh func(t *testing.T) S) {
	runTests(t, fresh, func(s S) PipelineStore { return s }, pipelineTests)
}

// newPipeline is a pipeline with every kind of field set.
func newPipeline(id, app, version string, created time.Time) *pipeline.Pipeline {
	return &pipeline.Pipeline{
		ID: id, App: app, Repo: "https://git.example/" + app, CloneURL: "https://git.example/" + app + ".git",
		Branch: "main", Commit: "c0ffee", Message: "a change", Delivery: "d-" + id, Version: version,
		StagingEnv: version, StagingURL: "http://" + version + ".staging.example",
		Phase: pipeline.Running, Created: created, Started: created.Add(time.Second),
		Steps: []pipeline.Step{
			{Name: pipeline.StepVersion, Phase: pipeline.Succeeded, Started: created.Add(time.Second), Finished: created.Add(2 * time.Second), Log: "picked " + version},
			{Name: pipeline.StepBuildApp, Phase: pipeline.Running, Started: created.Add(2 * time.Second)},
		},
	}
}

// wantPipeline fails t unless id reads back as want.
func wantPipeline(t *testing.T, s PipelineStore, want *pipeline.Pipeline) {
	t.Helper()
	got, err := s.GetPipeline(t.Context(), want.ID)
	if err != nil {
		t.Fatalf("GetPipeline(%q): %v", want.ID, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GetPipeline(%q) =\n%+v\nwant\n%+v", want.ID, got, want)
	}
}

// wantNoPipeline fails t unless id is unknown.
func wantNoPipeline(t *testing.T, s PipelineStore, id string) {
	t.Helper()
	if p, err := s.GetPipeline(t.Context(), id); !errors.Is(err, pipeline.ErrNotFound) {
		t.Errorf("GetPipeline(%q) = %+v, %v; want pipeline.ErrNotFound", id, p, err)
	}
}

// wantVersion fails t unless version belongs to pipeline id ("" none).
func wantVersion(t *testing.T, s PipelineStore, version, id string) {
	t.Helper()
	p, err := s.PipelineByVersion(t.Context(), version)
	switch {
	case id == "" && !errors.Is(err, pipeline.ErrNotFound):
		t.Errorf("PipelineByVersion(%q) = %+v, %v; want pipeline.ErrNotFound", version, p, err)
	case id == "":
	case err != nil:
		t.Errorf("PipelineByVersion(%q): %v, want pipeline %s", version, err, id)
	case p.ID != id || p.Version != version:
		t.Errorf("PipelineByVersion(%q) = pipeline %s with version %q, want %s", version, p.ID, p.Version, id)
	}
}

// listIDs lists pipelines and returns their ids in order.
func listIDs(t *testing.T, s PipelineStore, limit int) []string {
	t.Helper()
	ps, err := s.ListPipelines(t.Context(), limit)
	if err != nil {
		t.Fatalf("ListPipelines(%d): %v", limit, err)
	}
	ids := []string{}
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	return ids
}

var pipelineTests = []test[PipelineStore]{
	{"get of an unknown id is ErrNotFound", func(t *testing.T, s PipelineStore) {
		wantNoPipeline(t, s, "nope")
		wantVersion(t, s, "v1", "")
		if ids := listIDs(t, s, 10); len(ids) != 0 {
			t.Errorf("empty store lists %q", ids)
		}
	}},
	{"save inserts, saving again replaces", func(t *testing.T, s PipelineStore) {
		p := newPipeline("p1", "web", "v1", at(0))
		if err := s.SavePipeline(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		wantPipeline(t, s, p)
		p = p.Clone()
		p.Phase, p.Reason, p.FailedStep, p.Finished = pipeline.Failed, "build failed", pipeline.StepBuildApp, at(9)
		p.Steps[1].Phase, p.Steps[1].Error = pipeline.Failed, "exit 1"
		if err := s.SavePipeline(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		wantPipeline(t, s, p)
		if ids := listIDs(t, s, 10); !reflect.DeepEqual(ids, []string{"p1"}) {
			t.Errorf("after a replace the list is %q, want [p1]", ids)
		}
	}},
	{"the stored pipeline is a copy", func(t *testing.T, s PipelineStore) {
		p := newPipeline("p1", "web", "v1", at(0))
		want := p.Clone()
		if err := s.SavePipeline(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		p.Steps[0].Log, p.Phase = "changed after save", pipeline.Failed
		wantPipeline(t, s, want)
		got, err := s.GetPipeline(t.Context(), "p1")
		if err != nil {
			t.Fatal(err)
		}
		got.Steps[0].Log = "changed after get"
		wantPipeline(t, s, want)
	}},
	{"list is newest first, at most limit", func(t *testing.T, s PipelineStore) {
		for i, id := range []string{"b", "d", "a", "c", "e"} {
			// created: b 3, d 1, a 4, c 0, e 2
			created := at([]int{3, 1, 4, 0, 2}[i])
			if err := s.SavePipeline(t.Context(), newPipeline(id, "web", "", created)); err != nil {
				t.Fatal(err)
			}
		}
		for _, tt := range []struct {
			limit int
			want  []string
		}{
			{limit: 10, want: []string{"a", "b", "e", "d", "c"}},
			{limit: 5, want: []string{"a", "b", "e", "d", "c"}},
			{limit: 2, want: []string{"a", "b"}},
			{limit: 1, want: []string{"a"}},
		} {
			if got := listIDs(t, s, tt.limit); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ListPipelines(%d) = %q, want %q", tt.limit, got, tt.want)
			}
		}
	}},
	{"a replace lists by the pipeline's new creation time", func(t *testing.T, s PipelineStore) {
		for i, id := range []string{"a", "b"} {
			if err := s.SavePipeline(t.Context(), newPipeline(id, "web", "", at(i))); err != nil {
				t.Fatal(err)
			}
		}
		a := newPipeline("a", "api", "", at(5))
		if err := s.SavePipeline(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		if got := listIDs(t, s, 10); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("after a was saved with a later creation time the list is %q, want [a b]", got)
		}
		wantPipeline(t, s, a)
	}},
	{"a version is unique across apps", func(t *testing.T, s PipelineStore) {
		first := newPipeline("web-1", "web", "v1", at(0))
		if err := s.SavePipeline(t.Context(), first); err != nil {
			t.Fatal(err)
		}
		// A new pipeline with the version is refused and not stored.
		err := s.SavePipeline(t.Context(), newPipeline("api-1", "api", "v1", at(1)))
		if !errors.Is(err, pipeline.ErrVersionTaken) {
			t.Fatalf("SavePipeline of a second pipeline with v1: %v, want pipeline.ErrVersionTaken", err)
		}
		wantNoPipeline(t, s, "api-1")
		// An existing pipeline taking the version is refused and kept
		// as it was.
		other := newPipeline("web-2", "web", "v2", at(2))
		if err := s.SavePipeline(t.Context(), other); err != nil {
			t.Fatal(err)
		}
		taking := other.Clone()
		taking.Version, taking.Message = "v1", "not saved"
		if err := s.SavePipeline(t.Context(), taking); !errors.Is(err, pipeline.ErrVersionTaken) {
			t.Fatalf("SavePipeline of web-2 with v1: %v, want pipeline.ErrVersionTaken", err)
		}
		wantPipeline(t, s, other)
		wantPipeline(t, s, first)
		wantVersion(t, s, "v1", "web-1")
		wantVersion(t, s, "v2", "web-2")
	}},
	{"saving a pipeline again with its own version", func(t *testing.T, s PipelineStore) {
		p := newPipeline("p1", "web", "v1", at(0))
		for range 3 {
			if err := s.SavePipeline(t.Context(), p); err != nil {
				t.Fatal(err)
			}
		}
		wantVersion(t, s, "v1", "p1")
	}},
	{"a changed version frees the old one", func(t *testing.T, s PipelineStore) {
		p := newPipeline("p1", "web", "v1", at(0))
		if err := s.SavePipeline(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		p = p.Clone()
		p.Version = "v2"
		if err := s.SavePipeline(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		wantVersion(t, s, "v1", "")
		wantVersion(t, s, "v2", "p1")
		if err := s.SavePipeline(t.Context(), newPipeline("p2", "api", "v1", at(1))); err != nil {
			t.Errorf("SavePipeline with the freed version v1: %v", err)
		}
		wantVersion(t, s, "v1", "p2")
	}},
	{"pipelines without a version", func(t *testing.T, s PipelineStore) {
		for _, id := range []string{"p1", "p2", "p3"} {
			if err := s.SavePipeline(t.Context(), newPipeline(id, "web", "", at(0))); err != nil {
				t.Fatalf("SavePipeline(%s) with no version: %v", id, err)
			}
		}
		// No version is not a version.
		wantVersion(t, s, "", "")
		if ids := listIDs(t, s, 10); len(ids) != 3 {
			t.Errorf("listed %q, want 3 pipelines", ids)
		}
	}},
	{"hostile strings are kept exactly", func(t *testing.T, s PipelineStore) {
		var want []*pipeline.Pipeline
		for i, key := range hostileKeys {
			p := newPipeline(key, key, key, at(i))
			p.Message, p.Reason, p.Steps[0].Log = key, hostileValue, hostileValue
			if err := s.SavePipeline(t.Context(), p); err != nil {
				t.Fatalf("SavePipeline(%q): %v", key, err)
			}
			want = append(want, p)
		}
		for _, p := range want {
			wantPipeline(t, s, p)
			wantVersion(t, s, p.Version, p.ID)
		}
		wantNoPipeline(t, s, "%")
		wantNoPipeline(t, s, "CASE")
	}},
	{"concurrent writers of different pipelines lose nothing", func(t *testing.T, s PipelineStore) {
		parallel(t, writers, func(i int) error {
			for j := range writes {
				p := newPipeline(fmt.Sprintf("p-%d-%d", i, j), "web", fmt.Sprintf("v-%d-%d", i, j), at(i*writes+j))
				if err := s.SavePipeline(t.Context(), p); err != nil {
					return err
				}
			}
			return nil
		})
		if ids := listIDs(t, s, writers*writes+1); len(ids) != writers*writes {
			t.Fatalf("listed %d pipelines, want %d", len(ids), writers*writes)
		}
		for i := range writers {
			for j := range writes {
				wantPipeline(t, s, newPipeline(fmt.Sprintf("p-%d-%d", i, j), "web", fmt.Sprintf("v-%d-%d", i, j), at(i*writes+j)))
			}
		}
	}},
	{"concurrent writers of one pipeline: one whole write wins", func(t *testing.T, s PipelineStore) {
		write := func(i int) *pipeline.Pipeline {
			p := newPipeline("p", "web", fmt.Sprintf("v-%d", i), at(0))
			p.Message, p.Reason, p.Steps[0].Log = fmt.Sprintf("message %d", i), fmt.Sprintf("reason %d", i), fmt.Sprintf("log %d", i)
			return p
		}
		parallel(t, writers, func(i int) error {
			for range writes {
				if err := s.SavePipeline(t.Context(), write(i)); err != nil {
					return err
				}
			}
			return nil
		})
		got, err := s.GetPipeline(t.Context(), "p")
		if err != nil {
			t.Fatal(err)
		}
		var winner = -1
		for i := range writers {
			if reflect.DeepEqual(got, write(i)) {
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("after concurrent writes the pipeline is %+v, not any one writer's", got)
		}
		for i := range writers {
			if i == winner {
				wantVersion(t, s, write(i).Version, "p")
			} else {
				wantVersion(t, s, write(i).Version, "")
			}
		}
		// The write after them all is the one kept.
		last := write(writers)
		if err := s.SavePipeline(t.Context(), last); err != nil {
			t.Fatal(err)
		}
		wantPipeline(t, s, last)
	}},
	{"concurrent claims of one version: exactly one wins", func(t *testing.T, s PipelineStore) {
		won := make([]bool, writers)
		parallel(t, writers, func(i int) error {
			err := s.SavePipeline(t.Context(), newPipeline(fmt.Sprintf("p-%d", i), "web", "v1", at(i)))
			if errors.Is(err, pipeline.ErrVersionTaken) {
				return nil
			}
			won[i] = err == nil
			return err
		})
		winners := 0
		for i, w := range won {
			if w {
				winners++
				wantVersion(t, s, "v1", fmt.Sprintf("p-%d", i))
			} else {
				wantNoPipeline(t, s, fmt.Sprintf("p-%d", i))
			}
		}
		if winners != 1 {
			t.Errorf("%d pipelines got version v1, want 1", winners)
		}
	}},
	{"a cancelled context writes nothing", func(t *testing.T, s PipelineStore) {
		p := newPipeline("p1", "web", "v1", at(0))
		wantCancelled(t, "SavePipeline", s.SavePipeline(cancelled(t), p))
		wantNoPipeline(t, s, "p1")
		if err := s.SavePipeline(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		changed := p.Clone()
		changed.Phase = pipeline.Failed
		wantCancelled(t, "SavePipeline", s.SavePipeline(cancelled(t), changed))
		wantPipeline(t, s, p)
		_, err := s.GetPipeline(cancelled(t), "p1")
		wantCancelled(t, "GetPipeline", err)
	}},
}
