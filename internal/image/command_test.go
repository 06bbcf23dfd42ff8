package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary a team's image build: run by a
// Command, it pushes RUNWAY_ARTIFACT_DIR with a Builder of its own (in its
// own process, over HTTP) and prints the reference.
const helperEnv = "RUNWAY_IMAGE_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "push" {
		if err := helperPush(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helperPush() error {
	app, tag := os.Getenv("RUNWAY_IMAGE_NAME"), os.Getenv("RUNWAY_IMAGE_TAG")
	registry := strings.TrimSuffix(os.Getenv("RUNWAY_IMAGE"), "/"+app+":"+tag)
	var entrypoint []string
	if err := json.Unmarshal([]byte(os.Getenv("RUNWAY_ENTRYPOINT")), &entrypoint); err != nil {
		return err
	}
	b, err := New(Options{Registry: registry, Insecure: true})
	if err != nil {
		return err
	}
	fmt.Println("building", os.Getenv("RUNWAY_IMAGE"), "with the test helper")
	ref, err := b.Build(context.Background(), app, tag, os.Getenv("RUNWAY_ARTIFACT_DIR"), entrypoint)
	if err != nil {
		return err
	}
	fmt.Printf("pushed\n%s\n\n", ref)
	return nil
}

func TestCommandPushes(t *testing.T) {
	reg := startRegistry(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &Command{
		Shell:    `echo "building $RUNWAY_IMAGE_NAME in $PWD" >&2; "$HELPER"`,
		Env:      []string{"HELPER=" + self, helperEnv + "=push"},
		Registry: reg.host + "/team",
	}
	dir := artifact(t)
	entrypoint := []string{"./testapp", "-host", "$(POD_IP)"}
	ref, err := c.Build(t.Context(), "hello", "v1", dir, entrypoint)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref, reg.host+"/team/hello@sha256:") {
		t.Fatalf("Build = %q, want %s/team/hello@sha256:...", ref, reg.host)
	}
	dest := t.TempDir()
	cfg, err := Extract(t.Context(), ref, dest, reg.options())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Entrypoint, entrypoint) {
		t.Errorf("entrypoint = %q, want %q", cfg.Entrypoint, entrypoint)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "runway/app/testapp")); err != nil || !strings.Contains(string(b), "echo hello") {
		t.Errorf("testapp = %q, %v", b, err)
	}
	// The helper's image is the one this process builds of the same dir.
	b, err := New(Options{Registry: reg.host + "/team", Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if here, err := b.Build(t.Context(), "hello", "v1", dir, entrypoint); err != nil || here != ref {
		t.Errorf("Builder = %q, %v; the command pushed %q", here, err, ref)
	}
}

func TestCommand(t *testing.T) {
	const digestRef = "registry.example.com/team/hello@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name    string
		command Command
		assert  func(t *testing.T, dir, ref string, err error)
	}{
		{
			name: "environment",
			command: Command{
				Shell:    `env | grep -E '^RUNWAY_(APP_DIR|ARTIFACT_DIR|ENTRYPOINT|IMAGE|IMAGE_NAME|IMAGE_TAG)=' | sort > "$OUT/env"; pwd > "$OUT/pwd"; echo ` + digestRef,
				Registry: "registry.example.com/team",
			},
			assert: func(t *testing.T, dir, ref string, err error) {
				if err != nil || ref != digestRef {
					t.Fatalf("Build = %q, %v; want %q", ref, err, digestRef)
				}
				out := filepath.Join(filepath.Dir(dir), "out")
				env, err := os.ReadFile(filepath.Join(out, "env"))
				if err != nil {
					t.Fatal(err)
				}
				want := []string{
					"RUNWAY_APP_DIR=/runway/app",
					"RUNWAY_ARTIFACT_DIR=" + dir,
					`RUNWAY_ENTRYPOINT=["./app","-v"]`,
					"RUNWAY_IMAGE=registry.example.com/team/hello:v1",
					"RUNWAY_IMAGE_NAME=hello",
					"RUNWAY_IMAGE_TAG=v1",
				}
				if got := strings.Split(strings.TrimSpace(string(env)), "\n"); !slices.Equal(got, want) {
					t.Errorf("environment:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if pwd, err := os.ReadFile(filepath.Join(out, "pwd")); err != nil || strings.TrimSpace(string(pwd)) != dir {
					t.Errorf("working dir = %q, %v; want %s", pwd, err, dir)
				}
			},
		},
		{
			name:    "last non-empty line",
			command: Command{Shell: `echo step 1; echo ` + digestRef + `; echo; echo "   "`},
			assert: func(t *testing.T, dir, ref string, err error) {
				if err != nil || ref != digestRef {
					t.Fatalf("Build = %q, %v; want %q", ref, err, digestRef)
				}
			},
		},
		{
			name:    "tag reference",
			command: Command{Shell: `echo registry.example.com/team/hello:v1`},
			assert: func(t *testing.T, dir, ref string, err error) {
				if err != nil || ref != "registry.example.com/team/hello:v1" {
					t.Fatalf("Build = %q, %v", ref, err)
				}
			},
		},
		{
			name:    "fails",
			command: Command{Shell: `echo pushing; echo "denied: no access" >&2; exit 3`, Registry: "registry.example.com/team"},
			assert: func(t *testing.T, dir, ref string, err error) {
				for _, want := range []string{"running image command for registry.example.com/team/hello:v1", "exit status 3", "denied: no access", "pushing"} {
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Errorf("Build = %q, %v; want an error with %q", ref, err, want)
					}
				}
			},
		},
		{
			name:    "prints nothing",
			command: Command{Shell: `true`},
			assert: func(t *testing.T, dir, ref string, err error) {
				if !errors.Is(err, ErrNoReference) {
					t.Errorf("Build = %q, %v; want ErrNoReference", ref, err)
				}
			},
		},
		{
			name:    "prints no reference",
			command: Command{Shell: `echo 'Successfully built!'`},
			assert: func(t *testing.T, dir, ref string, err error) {
				if err == nil || !strings.Contains(err.Error(), `"Successfully built!" is not an image reference`) {
					t.Errorf("Build = %q, %v; want a not a reference error", ref, err)
				}
			},
		},
		{
			name: "output bounded",
			command: Command{
				Shell:       `i=0; while [ $i -lt 5000 ]; do echo "line $i of a chatty build"; echo "err $i" >&2; i=$((i+1)); done; exit 1`,
				OutputLimit: 4 << 10,
			},
			assert: func(t *testing.T, dir, ref string, err error) {
				if err == nil {
					t.Fatal("Build succeeded")
				}
				msg := err.Error()
				if len(msg) > 6<<10 || !strings.Contains(msg, "line 4999 of a chatty build") || !strings.Contains(msg, "err 4999") || strings.Contains(msg, "line 0 ") {
					t.Errorf("error of %d bytes, want the output's tail only: %s", len(msg), msg)
				}
			},
		},
		{
			name:    "timeout",
			command: Command{Shell: `sleep 60 & wait`, Timeout: 100 * time.Millisecond},
			assert: func(t *testing.T, dir, ref string, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Build = %q, %v; want a deadline error", ref, err)
				}
			},
		},
		{
			name:    "empty",
			command: Command{Shell: "  "},
			assert: func(t *testing.T, dir, ref string, err error) {
				if err == nil || !strings.Contains(err.Error(), "empty command") {
					t.Errorf("Build = %q, %v", ref, err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir, out := filepath.Join(base, "art"), filepath.Join(base, "out")
			must(t, os.Mkdir(dir, 0o755))
			must(t, os.Mkdir(out, 0o755))
			c := tc.command
			c.Env = append(c.Env, "OUT="+out)
			ref, err := c.Build(t.Context(), "hello", "v1", dir, []string{"./app", "-v"})
			tc.assert(t, dir, ref, err)
		})
	}
}
