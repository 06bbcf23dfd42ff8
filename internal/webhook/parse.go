package webhook

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/go-github/v75/github"
)

// ErrInvalid is wrapped by errors about malformed payloads.
var ErrInvalid = errors.New("invalid push payload")

// branchPrefix starts the refs of branches.
const branchPrefix = "refs/heads/"

// ParsePush decodes a push event payload (the JSON body GitHub sends with
// X-GitHub-Event: push). It requires the repository's full name, the ref and
// the after sha, and checks that they are well formed: after (and before,
// when present) is 40 lowercase hex digits (an all-zero after marks a
// deleted ref, an all-zero before a new one). The commits' added, modified
// and removed paths are kept, bounded, as a fallback for path filters.
func ParsePush(payload []byte) (Push, error) {
	ev, err := github.ParseWebHook("push", payload)
	if err != nil {
		return Push{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	pe, ok := ev.(*github.PushEvent)
	if !ok {
		return Push{}, fmt.Errorf("%w: unexpected event type %T", ErrInvalid, ev)
	}
	if pe.GetRepo().GetFullName() == "" {
		return Push{}, fmt.Errorf("%w: missing repository.full_name", ErrInvalid)
	}
	if pe.GetRef() == "" {
		return Push{}, fmt.Errorf("%w: missing ref", ErrInvalid)
	}
	if pe.GetAfter() == "" {
		return Push{}, fmt.Errorf("%w: missing after", ErrInvalid)
	}
	p := Push{
		Repo:     pe.GetRepo().GetFullName(),
		CloneURL: pe.GetRepo().GetCloneURL(),
		Ref:      pe.GetRef(),
		After:    pe.GetAfter(),
		Message:  capMessage(pe.GetHeadCommit().GetMessage()),
		Author:   author(pe.GetHeadCommit().GetAuthor()),
		Pusher:   pusher(pe),
	}
	if err := checkRepo(p.Repo); err != nil {
		return Push{}, err
	}
	if err := checkSHA("after", p.After); err != nil {
		return Push{}, err
	}
	if err := checkRef(p.Ref); err != nil {
		return Push{}, err
	}
	if p.Before = pe.GetBefore(); p.Before != "" {
		if err := checkSHA("before", p.Before); err != nil {
			return Push{}, err
		}
	}
	// The deprecation of Commits is about the Events API's payloads;
	// push webhooks still carry the commits, and they are only the
	// fallback when git cannot tell what changed.
	//lint:ignore SA1019 webhook payloads still have commits (see above)
	p.Paths, p.PathsListed = listedPaths(pe.Commits)
	// A deleted ref has an all-zero after sha.
	p.Deleted = pe.GetDeleted() || strings.Trim(p.After, "0") == ""
	if b, ok := strings.CutPrefix(p.Ref, branchPrefix); ok {
		p.Branch = b
	}
	return p, nil
}

// maxListedCommits is GitHub's cap on a push payload's commits: a payload
// with that many may have left some out.
const maxListedCommits = 2048

// listedPaths returns the paths commits list as added, modified or removed,
// each once, and whether that is every path the push changed as far as the
// payload can tell (see Push.PathsListed).
func listedPaths(commits []*github.HeadCommit) ([]string, bool) {
	if len(commits) == 0 || len(commits) >= maxListedCommits {
		return nil, false
	}
	seen := map[string]bool{}
	var paths []string
	for _, c := range commits {
		if c == nil {
			continue
		}
		for _, list := range [][]string{c.Added, c.Modified, c.Removed} {
			for _, p := range list {
				if seen[p] {
					continue
				}
				if len(paths) == MaxChangedPaths {
					return nil, false
				}
				seen[p] = true
				paths = append(paths, p)
			}
		}
	}
	return paths, true
}

// pusher names who pushed: the pusher's name, else the sender's login.
func pusher(pe *github.PushEvent) string {
	if n := pe.GetPusher().GetName(); n != "" {
		return n
	}
	if n := pe.GetPusher().GetLogin(); n != "" {
		return n
	}
	return pe.GetSender().GetLogin()
}

// checkRepo accepts owner/name with GitHub's characters for both parts.
func checkRepo(repo string) error {
	if ValidRepoName(repo) != nil {
		return fmt.Errorf("%w: repository.full_name %q is not owner/name", ErrInvalid, repo)
	}
	return nil
}

// ValidRepoName checks a repository's full name as GitHub sends it in
// repository.full_name: owner/name, each at most 100 of [A-Za-z0-9._-].
func ValidRepoName(repo string) error {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || !repoPart(owner) || !repoPart(name) || name == "." || name == ".." {
		shown := repo
		if len(shown) > 210 {
			shown = shown[:210] + "..."
		}
		return fmt.Errorf("%q is not a GitHub full name owner/name (letters, digits, '.', '_', '-')", shown)
	}
	return nil
}

func repoPart(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// checkSHA accepts a commit id as GitHub sends it: 40 lowercase hex digits
// (GitHub repositories are SHA-1). An id is quoted in the error only when
// short, so an answer never echoes a large payload field.
func checkSHA(field, sha string) error {
	ok := len(sha) == 40
	for _, c := range []byte(sha) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			ok = false
		}
	}
	if ok {
		return nil
	}
	shown := sha
	if len(shown) > 80 {
		shown = shown[:80] + "..."
	}
	return fmt.Errorf("%w: %s %q is not a commit id (40 lowercase hex digits)", ErrInvalid, field, shown)
}

// checkRef applies git's rules for ref names (git check-ref-format), so a
// ref is safe to hand to git later.
func checkRef(ref string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: ref %.200q %s", ErrInvalid, ref, why) // a hostile ref is not echoed whole
	}
	switch {
	case len(ref) > 1024:
		return bad("is too long")
	case !strings.HasPrefix(ref, "refs/"):
		return bad("does not start with refs/")
	case strings.Contains(ref, ".."), strings.Contains(ref, "@{"), strings.Contains(ref, "//"):
		return bad("contains '..', '@{' or '//'")
	case strings.HasSuffix(ref, "/"), strings.HasSuffix(ref, "."), strings.HasSuffix(ref, ".lock"):
		return bad("ends with '/', '.' or '.lock'")
	}
	for _, c := range []byte(ref) {
		if c < 0x20 || c == 0x7f || strings.IndexByte(" ~^:?*[\\", c) >= 0 {
			return bad("contains a forbidden character")
		}
	}
	for _, part := range strings.Split(ref, "/") {
		if part == "" || strings.HasPrefix(part, ".") || strings.HasPrefix(part, "-") || strings.HasSuffix(part, ".lock") {
			return bad("has an empty component or one starting with '.' or '-'")
		}
	}
	return nil
}

// MaxMessage bounds the head commit's message a push carries into a
// pipeline (and, by its first line, into manifests' change descriptions),
// in bytes; a longer one is cut at a character boundary.
const MaxMessage = 16 << 10

func capMessage(m string) string {
	if len(m) <= MaxMessage {
		return m
	}
	m = m[:MaxMessage]
	for len(m) > 0 && !utf8.ValidString(m) {
		m = m[:len(m)-1]
	}
	return m
}

// maxAuthor bounds a commit author's name and email together, in bytes.
const maxAuthor = 256

// author is a commit author as git prints it, "Name <email>", or the
// part the payload has; "" when it has neither.
func author(a *github.CommitAuthor) string {
	name, email := strings.TrimSpace(a.GetName()), strings.TrimSpace(a.GetEmail())
	s := name
	switch {
	case name != "" && email != "":
		s = name + " <" + email + ">"
	case email != "":
		s = email
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1 // no control characters in a one-line field
		}
		return r
	}, s)
	if len(s) > maxAuthor {
		s = strings.ToValidUTF8(s[:maxAuthor], "")
	}
	return s
}
