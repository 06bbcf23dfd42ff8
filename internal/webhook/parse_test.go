package webhook_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/runway-cd/runway/internal/webhook"
)

const (
	sha    = "8d3f1b2c4e5a69788796a5b4c3d2e1f001234567"
	before = "0123456789abcdef0123456789abcdef01234567"
)

// pushPayload returns a push payload like GitHub's, trimmed to what matters.
func pushPayload(repo, ref, after string) string {
	return `{
  "ref": "` + ref + `",
  "before": "` + before + `",
  "after": "` + after + `",
  "created": false, "deleted": false, "forced": false,
  "repository": {"id": 1, "name": "homelabping", "full_name": "` + repo + `",
    "clone_url": "https://github.com/` + repo + `.git", "private": false},
  "pusher": {"name": "chester", "email": "c@example.com"},
  "sender": {"login": "chester", "id": 7},
  "head_commit": {"id": "` + after + `", "message": "ping returns json", "timestamp": "2023-05-01T10:00:00Z"}
}`
}

func TestParsePush(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    webhook.Push
		wantErr bool
	}{
		{
			name:    "branch",
			payload: pushPayload("chestercodes/homelabping", "refs/heads/main", sha),
			want: webhook.Push{
				Repo: "chestercodes/homelabping", CloneURL: "https://github.com/chestercodes/homelabping.git",
				Ref: "refs/heads/main", Branch: "main", After: sha, Message: "ping returns json", Pusher: "chester", Before: before,
			},
		},
		{
			name:    "nested branch",
			payload: pushPayload("o/r", "refs/heads/feature/x", sha),
			want: webhook.Push{Repo: "o/r", CloneURL: "https://github.com/o/r.git", Ref: "refs/heads/feature/x",
				Branch: "feature/x", After: sha, Message: "ping returns json", Pusher: "chester", Before: before},
		},
		{
			name:    "tag",
			payload: pushPayload("o/r", "refs/tags/v1", sha),
			want: webhook.Push{Repo: "o/r", CloneURL: "https://github.com/o/r.git", Ref: "refs/tags/v1",
				After: sha, Message: "ping returns json", Pusher: "chester", Before: before},
		},
		{
			name:    "deleted by zero sha",
			payload: pushPayload("o/r", "refs/heads/main", strings.Repeat("0", 40)),
			want: webhook.Push{Repo: "o/r", CloneURL: "https://github.com/o/r.git", Ref: "refs/heads/main", Branch: "main",
				After: strings.Repeat("0", 40), Message: "ping returns json", Pusher: "chester", Deleted: true, Before: before},
		},
		{
			name:    "deleted flag",
			payload: strings.Replace(pushPayload("o/r", "refs/heads/main", sha), `"deleted": false`, `"deleted": true`, 1),
			want: webhook.Push{Repo: "o/r", CloneURL: "https://github.com/o/r.git", Ref: "refs/heads/main", Branch: "main",
				After: sha, Message: "ping returns json", Pusher: "chester", Deleted: true, Before: before},
		},
		{name: "not json", payload: `{"ref":`, wantErr: true},
		{name: "empty object", payload: `{}`, wantErr: true},
		{name: "missing repository", payload: `{"ref":"refs/heads/main","after":"` + sha + `"}`, wantErr: true},
		{name: "missing ref", payload: pushPayload("o/r", "", sha), wantErr: true},
		{name: "missing after", payload: pushPayload("o/r", "refs/heads/main", ""), wantErr: true},
		{name: "after not hex", payload: pushPayload("o/r", "refs/heads/main", strings.Repeat("z", 40)), wantErr: true},
		{name: "after uppercase", payload: pushPayload("o/r", "refs/heads/main", strings.ToUpper(sha)), wantErr: true},
		{name: "after sha-256 length", payload: pushPayload("o/r", "refs/heads/main", sha+sha[:24]), wantErr: true},
		{name: "after 41 digits", payload: pushPayload("o/r", "refs/heads/main", sha+"0"), wantErr: true},
		{name: "after option", payload: pushPayload("o/r", "refs/heads/main", "--upload-pack=evil"), wantErr: true},
		{name: "repo without owner", payload: pushPayload("homelabping", "refs/heads/main", sha), wantErr: true},
		{name: "repo path traversal", payload: pushPayload("o/..", "refs/heads/main", sha), wantErr: true},
		{name: "ref with dotdot", payload: pushPayload("o/r", "refs/heads/../../x", sha), wantErr: true},
		{name: "ref with space", payload: pushPayload("o/r", "refs/heads/a b", sha), wantErr: true},
		{name: "ref not under refs", payload: pushPayload("o/r", "main", sha), wantErr: true},
		{name: "wrong types", payload: `{"ref":1,"after":true,"repository":"x"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := webhook.ParsePush([]byte(tt.payload))
			if tt.wantErr {
				if !errors.Is(err, webhook.ErrInvalid) {
					t.Fatalf("ParsePush = %+v, %v; want ErrInvalid", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePush: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParsePush =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func FuzzParsePush(f *testing.F) {
	f.Add([]byte(pushPayload("chestercodes/homelabping", "refs/heads/main", sha)))
	f.Add([]byte(pushPayload("o/r", "refs/tags/v1", strings.Repeat("0", 40))))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"ref":"refs/heads/x","after":"` + sha + `","repository":{"full_name":"a/b"}}`))
	f.Add([]byte(pushChanging("o/r", "refs/heads/main", before, []string{"src/a.go", "docs/x.md", "src/a.go"})))
	f.Add([]byte(`{"ref":"refs/heads/x","before":"x","after":"` + sha + `","repository":{"full_name":"a/b"},"commits":[null,{"added":["a"]}]}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		p, err := webhook.ParsePush(payload)
		if err != nil {
			if !errors.Is(err, webhook.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if p.Repo == "" || p.Ref == "" || len(p.After) != 40 || strings.ToLower(p.After) != p.After {
			t.Fatalf("accepted incomplete push %+v", p)
		}
		if p.Branch != "" && "refs/heads/"+p.Branch != p.Ref {
			t.Fatalf("branch %q does not match ref %q", p.Branch, p.Ref)
		}
		if strings.Contains(p.Ref, "..") || strings.ContainsAny(p.Ref, " \n\x00") || strings.HasPrefix(p.After, "-") {
			t.Fatalf("accepted unsafe push %+v", p)
		}
		if p.Before != "" && (len(p.Before) != 40 || strings.Trim(p.Before, "0123456789abcdef") != "") {
			t.Fatalf("accepted before %q", p.Before)
		}
		if len(p.Paths) > webhook.MaxChangedPaths || (!p.PathsListed && p.Paths != nil) {
			t.Fatalf("paths %d listed %v", len(p.Paths), p.PathsListed)
		}
		seen := map[string]bool{}
		for _, name := range p.Paths {
			if seen[name] {
				t.Fatalf("path %q listed twice", name)
			}
			seen[name] = true
		}
	})
}

func TestParsePushPaths(t *testing.T) {
	many := make([]string, webhook.MaxChangedPaths+1)
	for i := range many {
		many[i] = fmt.Sprint("f", i)
	}
	tests := []struct {
		name       string
		payload    string
		wantPaths  []string
		wantListed bool
		wantErr    bool
	}{
		{"no commits", pushPayload("o/r", "refs/heads/main", sha), nil, false, false},
		{"listed once each", pushChanging("o/r", "refs/heads/main", before, []string{"src/a.go", "docs/x.md", "src/a.go"}), []string{"src/a.go", "docs/x.md"}, true, false},
		{"too many", pushChanging("o/r", "refs/heads/main", before, many), nil, false, false},
		{"before not a commit id", pushChanging("o/r", "refs/heads/main", "main", nil), nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := webhook.ParsePush([]byte(tt.payload))
			if tt.wantErr {
				if !errors.Is(err, webhook.ErrInvalid) || !strings.Contains(err.Error(), "before") {
					t.Fatalf("ParsePush = %v, want ErrInvalid naming before", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.Paths, tt.wantPaths) || p.PathsListed != tt.wantListed {
				t.Fatalf("paths %q listed %v, want %q %v", p.Paths, p.PathsListed, tt.wantPaths, tt.wantListed)
			}
		})
	}
}

// A hostile push is not echoed whole: a long ref is refused with an error
// of bounded size, and a long head commit message is cut, at a character
// boundary, before it reaches a pipeline.
func TestParseBoundsWhatItKeeps(t *testing.T) {
	ref := "refs/heads/" + strings.Repeat("a", 1<<20)
	_, err := webhook.ParsePush([]byte(`{"ref":"` + ref + `","after":"` + strings.Repeat("a", 40) + `","repository":{"full_name":"o/r"}}`))
	if err == nil || len(err.Error()) > 4096 {
		t.Fatalf("a 1 MiB ref: error of %d bytes, want a refusal under 4 KiB", len(fmt.Sprint(err)))
	}
	msg := strings.Repeat("é", webhook.MaxMessage) // 2 bytes each: cut mid-character
	p, err := webhook.ParsePush([]byte(`{"ref":"refs/heads/main","after":"` + strings.Repeat("a", 40) + `","repository":{"full_name":"o/r"},"head_commit":{"message":"` + msg + `"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Message) > webhook.MaxMessage || len(p.Message) < webhook.MaxMessage-4 || !utf8.ValidString(p.Message) {
		t.Fatalf("message of %d bytes (valid UTF-8: %v), want cut to at most %d", len(p.Message), utf8.ValidString(p.Message), webhook.MaxMessage)
	}
}

func TestParsePushAuthor(t *testing.T) {
	tests := []struct {
		name, author, want string
	}{
		{"name and email", `{"name": "Chester", "email": "c@example.com"}`, "Chester <c@example.com>"},
		{"name only", `{"name": "Chester"}`, "Chester"},
		{"email only", `{"email": "c@example.com"}`, "c@example.com"},
		{"none", `{}`, ""},
		{"control characters dropped", `{"name": "Ches\u001b[31mter\nX"}`, "Ches[31mterX"},
		{"bounded", `{"name": "` + strings.Repeat("é", 300) + `"}`, strings.Repeat("é", 128)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := strings.Replace(pushPayload("chestercodes/homelabping", "refs/heads/main", sha),
				`"timestamp": "2023-05-01T10:00:00Z"`, `"timestamp": "2023-05-01T10:00:00Z", "author": `+tt.author, 1)
			p, err := webhook.ParsePush([]byte(payload))
			if err != nil {
				t.Fatal(err)
			}
			if p.Author != tt.want {
				t.Fatalf("author %q, want %q", p.Author, tt.want)
			}
		})
	}
}
