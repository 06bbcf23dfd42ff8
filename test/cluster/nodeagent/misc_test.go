package nodeagent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/runway-cd/runway/internal/image"
)

func TestCrashDelay(t *testing.T) {
	base := 10 * time.Second
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	for i, w := range want {
		if got := crashDelay(base, i+1); got != w {
			t.Errorf("crashDelay(10s, %d) = %s, want %s", i+1, got, w)
		}
	}
	if got := pullDelay(base, 1); got != base {
		t.Errorf("pullDelay(10s, 1) = %s, want 10s", got)
	}
}

func TestLastLines(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int64
		want string
	}{
		{name: "none", in: "a\nb\n", n: 0, want: ""},
		{name: "last one", in: "a\nb\nc\n", n: 1, want: "c\n"},
		{name: "two", in: "a\nb\nc\n", n: 2, want: "b\nc\n"},
		{name: "more than there are", in: "a\nb\n", n: 5, want: "a\nb\n"},
		{name: "unterminated last line", in: "a\nb\nc", n: 2, want: "b\nc"},
		{name: "empty", in: "", n: 3, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(lastLines([]byte(tt.in), tt.n)); got != tt.want {
				t.Fatalf("lastLines(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}

func TestLimitWriter(t *testing.T) {
	var b strings.Builder
	w := &limitWriter{w: &b, n: 5}
	for _, s := range []string{"abc", "defg", "h"} {
		if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if b.String() != "abcde" || !w.full() {
		t.Fatalf("wrote %q (full %v), want abcde", b.String(), w.full())
	}
}

func TestResolveProgram(t *testing.T) {
	root := t.TempDir()
	mk := func(p string, mode os.FileMode) {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("#!/bin/true\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	mk("runway/app/testapp", 0o755)
	mk("runway/app/data.txt", 0o644)
	mk("bin/tool", 0o755)
	cwd := filepath.Join(root, "runway/app")
	tests := []struct {
		name, argv0 string
		imageEnv    []string
		want        string // relative to root; "" wants an error; "host:" a host path
	}{
		{name: "relative to the working dir", argv0: "./testapp", want: "runway/app/testapp"},
		{name: "absolute inside the rootfs", argv0: "/runway/app/testapp", want: "runway/app/testapp"},
		{name: "bare name in the image's PATH", argv0: "tool", imageEnv: []string{"PATH=/bin"}, want: "bin/tool"},
		{name: "bare name on the host", argv0: "sh", want: "host:"},
		{name: "not executable", argv0: "./data.txt"},
		{name: "missing", argv0: "/nope"},
		{name: "escape is kept inside", argv0: "/../../runway/app/testapp", want: "runway/app/testapp"},
		{name: "empty", argv0: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveProgram(tt.argv0, root, cwd, tt.imageEnv)
			switch {
			case tt.want == "":
				if err == nil {
					t.Fatalf("resolveProgram = %s, want an error", got)
				}
			case tt.want == "host:":
				if err != nil || strings.HasPrefix(got, root) {
					t.Fatalf("resolveProgram = %s, %v; want a host path", got, err)
				}
			default:
				if err != nil || got != filepath.Join(root, tt.want) {
					t.Fatalf("resolveProgram = %s, %v; want %s", got, err, filepath.Join(root, tt.want))
				}
			}
		})
	}
}

func TestWorkingDir(t *testing.T) {
	if got := workingDir("/r", &corev1.Container{}, imageConfig("/runway/app")); got != "/r/runway/app" {
		t.Fatalf("image's working dir: %s", got)
	}
	if got := workingDir("/r", &corev1.Container{WorkingDir: "/data"}, imageConfig("/runway/app")); got != "/r/data" {
		t.Fatalf("container's working dir: %s", got)
	}
	if got := workingDir("/r", &corev1.Container{}, imageConfig("")); got != "/r" {
		t.Fatalf("no working dir: %s", got)
	}
}

func TestIPPool(t *testing.T) {
	dir := t.TempDir()
	a, err := newIPPool(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newIPPool(dir)
	if err != nil {
		t.Fatal(err)
	}
	b.start = a.start // the worst case: both search from the same place
	t.Cleanup(a.close)
	t.Cleanup(b.close)
	seen := map[string]bool{}
	for range 20 {
		for _, p := range []*ipPool{a, b} {
			ip, err := p.allocate()
			if err != nil {
				t.Fatal(err)
			}
			if seen[ip.String()] || !strings.HasPrefix(ip.String(), "127.1.") || strings.HasSuffix(ip.String(), ".0") && ip.As4()[2] == 0 {
				t.Fatalf("allocate gave %s twice or out of range", ip)
			}
			seen[ip.String()] = true
		}
	}
	// A released address can be taken again.
	ip, _ := a.allocate()
	a.release(ip)
	b.start = a.start - 1
	if b.start < 0 {
		b.start += poolSize
	}
	got, err := b.allocate()
	if err != nil || got != ip {
		t.Fatalf("after release: %s, %v; want %s", got, err, ip)
	}
}

func imageConfig(wd string) image.Config { return image.Config{WorkingDir: wd} }
