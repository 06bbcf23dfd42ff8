package auth

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
)

var hexToken = regexp.MustCompile(`^[0-9a-f]{64}$`)

func readToken(t *testing.T, dir, which string) string {
	t.Helper()
	tok, err := ReadFile(Path(dir, which))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Fatalf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
	}
}

func TestLoadGeneratesFiles(t *testing.T) {
	dir := t.TempDir()
	tokens, err := Load(dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	admin, read := readToken(t, dir, AdminToken), readToken(t, dir, ReadToken)
	if !hexToken.MatchString(admin) || !hexToken.MatchString(read) || admin == read {
		t.Fatalf("tokens %q and %q: want two different 32-byte hex tokens", admin, read)
	}
	for _, which := range []string{AdminToken, ReadToken} {
		assertMode(t, Path(dir, which), 0o600)
		if got := tokens.Source(which); got != Path(dir, which) {
			t.Fatalf("Source(%s) = %q", which, got)
		}
	}
	tests := []struct {
		token string
		want  Role
	}{
		{admin, Admin}, {read, Read}, {"", None}, {"nope", None}, {admin + "x", None}, {admin[:63], None},
	}
	for _, tt := range tests {
		if got := tokens.Role(tt.token); got != tt.want {
			t.Errorf("Role(%q) = %v, want %v", tt.token, got, tt.want)
		}
	}
	// A second start keeps the tokens.
	again, err := Load(dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if again.Role(admin) != Admin || again.Role(read) != Read || readToken(t, dir, AdminToken) != admin {
		t.Fatal("a second Load changed the tokens")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("data dir holds %d entries, want the two token files (no temporary files left)", len(entries))
	}
}

func TestLoadConcurrentStartsAgree(t *testing.T) {
	dir := t.TempDir()
	const n = 16
	loaded := make([]*Tokens, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loaded[i], errs[i] = Load(dir, "", "")
		}()
	}
	wg.Wait()
	admin := readToken(t, dir, AdminToken)
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("start %d: %v", i, errs[i])
		}
		if loaded[i].Role(admin) != Admin {
			t.Fatalf("start %d does not accept the admin token on disk", i)
		}
	}
}

func TestLoadGivenTokens(t *testing.T) {
	dir := t.TempDir()
	admin, read := "given-admin-token-0123456789", "given-read-token-0123456789"
	tokens, err := Load(dir, admin, read)
	if err != nil {
		t.Fatal(err)
	}
	if tokens.Role(admin) != Admin || tokens.Role(read) != Read || tokens.Source(AdminToken) != "config" {
		t.Fatal("given tokens not used")
	}
	if _, err := os.Stat(Path(dir, AdminToken)); !os.IsNotExist(err) {
		t.Fatalf("a given token still wrote its file: %v", err)
	}
	// Only the read token given: the admin one is generated.
	dir2 := t.TempDir()
	tokens, err = Load(dir2, "", read)
	if err != nil {
		t.Fatal(err)
	}
	if tokens.Role(readToken(t, dir2, AdminToken)) != Admin || tokens.Role(read) != Read {
		t.Fatal("mixed given and generated tokens")
	}
}

func TestLoadFileProblems(t *testing.T) {
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		wantErr bool
	}{
		{"short token", "abc\n", 0o600, true},
		{"empty file", "", 0o600, true},
		{"loose mode is repaired", "an-operator-chosen-token-of-length\n", 0o644, false},
		{"hand-written token", "  an-operator-chosen-token-of-length  \n", 0o600, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := Path(dir, AdminToken)
			if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tt.mode)
			tokens, err := Load(dir, "", "")
			if tt.wantErr {
				if err == nil {
					t.Fatal("Load accepted the file")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tokens.Role("an-operator-chosen-token-of-length") != Admin {
				t.Fatal("the file's token is not the admin token")
			}
			assertMode(t, path, 0o600)
		})
	}
}

func TestRotateIsPickedUpWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	tokens, err := Load(dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	oldAdmin, oldRead := readToken(t, dir, AdminToken), readToken(t, dir, ReadToken)
	got, err := Rotate(dir, AdminToken)
	if err != nil {
		t.Fatal(err)
	}
	newAdmin := got[AdminToken]
	if len(got) != 1 || !hexToken.MatchString(newAdmin) || newAdmin == oldAdmin || readToken(t, dir, AdminToken) != newAdmin {
		t.Fatalf("Rotate(admin) = %v", got)
	}
	assertMode(t, Path(dir, AdminToken), 0o600)
	if tokens.Role(oldAdmin) != None || tokens.Role(newAdmin) != Admin || tokens.Role(oldRead) != Read {
		t.Fatal("the running Tokens did not follow the rotation of the admin token alone")
	}
	all, err := Rotate(dir, "all")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || tokens.Role(all[AdminToken]) != Admin || tokens.Role(all[ReadToken]) != Read ||
		tokens.Role(newAdmin) != None || tokens.Role(oldRead) != None {
		t.Fatalf("after Rotate(all) = %v the running Tokens disagree", all)
	}
	if _, err := Rotate(dir, "root"); err == nil {
		t.Fatal("Rotate accepted an unknown token name")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("data dir holds %d entries, want the two token files", len(entries))
	}
	// A removed or emptied file keeps the last token rather than none.
	os.Remove(Path(dir, ReadToken))
	os.WriteFile(Path(dir, AdminToken), nil, 0o600)
	if tokens.Role(all[AdminToken]) != Admin || tokens.Role(all[ReadToken]) != Read {
		t.Fatal("a removed or emptied token file changed the accepted tokens")
	}
	if _, err := Rotate(filepath.Join(dir, "missing"), AdminToken); err == nil {
		t.Fatal("Rotate into a missing directory succeeded")
	}
}

func TestObserveSeesRotatedTokens(t *testing.T) {
	dir := t.TempDir()
	tokens, err := Load(dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	tokens.Observe(func(tok string) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, tok)
	})
	got, err := Rotate(dir, "all")
	if err != nil {
		t.Fatal(err)
	}
	if tokens.Role(got[AdminToken]) != Admin {
		t.Fatal("the rotated admin token is not accepted")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(seen, got[AdminToken]) || !slices.Contains(seen, got[ReadToken]) {
		t.Fatalf("Observe saw %d tokens, not both rotated ones", len(seen))
	}
}
