package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runway-cd/runway/internal/events"
	"github.com/runway-cd/runway/internal/pipeline"
	"github.com/runway-cd/runway/internal/rollout"
)

// waitPrinted returns once out holds want; it fails if the command ends
// first or nothing comes in a minute.
func waitPrinted(t *testing.T, out *syncBuffer, want string, done <-chan result) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(out.String(), want); time.Sleep(5 * time.Millisecond) {
		select {
		case r := <-done:
			t.Fatalf("the command ended (exit %d, stderr %q) before printing %q; it printed:\n%s", r.code, r.stderr, want, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("never printed %q; printed:\n%s", want, out.String())
		}
	}
}

// awaitResult is the command's result; bounded.
func awaitResult(t *testing.T, done <-chan result) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("the command never returned")
		return result{}
	}
}

func TestLogsFollow(t *testing.T) {
	for _, tt := range []struct {
		name   string
		stream bool
	}{
		{"by the event stream", true},
		{"by polling when there is no stream", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var rec *events.Recorder
			if tt.stream {
				rec = events.New(nil, nil)
			}
			srv := newTestAPI(t, rec)
			const id, tests, promote = "web-3", 7, 8 // web-3 runs its staging tests
			out := &syncBuffer{}
			done := make(chan result, 1)
			go func() { done <- cliEnv{stdout: out}.run(t.Context(), srv, "pipelines", "logs", id, "-f") }()
			waitPrinted(t, out, "ok   checkout\n", done)
			// Each line is written only once the one before it was printed:
			// the command follows the step as it runs.
			for _, line := range []string{"ok   payments\n", "ok   orders\n", "PASS"} {
				srv.pipelines.update(id, func(p *pipeline.Pipeline) { p.Steps[tests].Log += line })
				rec.Normal(events.Pipeline, id, "StepLog", pipeline.StepStagingTests)
				waitPrinted(t, out, line, done)
			}
			srv.pipelines.update(id, func(p *pipeline.Pipeline) {
				p.Steps[tests].Log += "\n"
				p.Steps[tests].Phase, p.Steps[tests].Finished = pipeline.Succeeded, testNow
				p.Steps[promote].Phase, p.Steps[promote].Started, p.Steps[promote].Log = pipeline.Running, testNow, "promoting v20261201114500\n"
			})
			rec.Normal(events.Pipeline, id, "StepSucceeded", pipeline.StepStagingTests)
			rec.Normal(events.Pipeline, id, "StepStarted", pipeline.StepPromote)
			waitPrinted(t, out, "promoting v20261201114500\n", done)
			srv.pipelines.update(id, func(p *pipeline.Pipeline) {
				p.Steps[promote].Log += "production has it\n"
				p.Steps[promote].Phase, p.Steps[promote].Finished = pipeline.Succeeded, testNow
				for i := promote + 1; i < len(p.Steps); i++ {
					p.Steps[i].Phase = pipeline.Succeeded
				}
				p.Phase, p.Finished = pipeline.Succeeded, testNow
			})
			rec.Normal(events.Pipeline, id, "Succeeded", "")
			r := awaitResult(t, done)
			want := `==> staging-functional-tests <==
running 12 tests
ok   checkout
ok   payments
ok   orders
PASS
==> promote <==
promoting v20261201114500
production has it
`
			if r.code != 0 || r.stdout != want || r.stderr != "pipeline web-3 Succeeded\n" {
				t.Fatalf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
			}
			if n := srv.streams.Load(); tt.stream && n == 0 {
				t.Fatal("the command never asked for the event stream")
			}
		})
	}
}

func TestLogPrinterAfterCut(t *testing.T) {
	var out syncBuffer
	lp := &logPrinter{out: &out, printed: map[string]string{}}
	var b strings.Builder
	for i := range 40 {
		fmt.Fprintf(&b, "compiling package %d\n", i)
	}
	old := b.String() + "line 1\nline 2\n"
	p := &pipeline.Pipeline{Steps: []pipeline.Step{{Name: "build-app", Log: old}}}
	_ = lp.update(p)
	// The stored log keeps its end: its start is cut, with a mark.
	p.Steps[0].Log = "...\n" + old[200:] + "line 3\n"
	_ = lp.update(p)
	p.Steps[0].Log = "something else entirely\n"
	_ = lp.update(p)
	want := "==> build-app <==\n" + old + "line 3\n-- (some of the log was cut) --\nsomething else entirely\n"
	if out.String() != want {
		t.Fatalf("printed\n%q\nwant\n%q", out.String(), want)
	}
}

func TestRolloutWatch(t *testing.T) {
	rec := events.New(nil, nil)
	srv := newTestAPI(t, rec)
	out := &syncBuffer{}
	done := make(chan result, 1)
	go func() { done <- cliEnv{stdout: out}.run(t.Context(), srv, "rollout", "watch", "web") }()
	waitPrinted(t, out, "Paused  step 3/7  weight 20%", done)
	set := func(f func(r *rollout.Status)) {
		srv.rollouts.update(func(rs []rollout.Status) { f(&rs[0]) })
		rec.Normal(events.Rollout, "production/web", "Changed", "")
	}
	set(func(r *rollout.Status) {
		r.Phase, r.Step, r.Weight, r.Message = rollout.Progressing, 4, 40, "weight 40%"
		r.Analyses = append(r.Analyses, rollout.Run{Name: "web-v20261201114500-step3-2", Phase: rollout.Running})
	})
	waitPrinted(t, out, "Progressing  step 4/7  weight 40%", done)
	set(func(r *rollout.Status) {
		r.Analyses[1].Phase, r.Analyses[1].Reason = rollout.Successful, "error-rate 0.01 <= 0.05"
		r.Phase, r.Step, r.Weight, r.Message, r.Finished = rollout.Healthy, 7, 100, "promoted", testNow
	})
	r := awaitResult(t, done)
	for _, want := range []string{
		"12:00:00  Paused  step 3/7  weight 20%  v20261201114500  paused: analysis",
		"12:00:00    analysis web-v20261201114500-step3-1 Inconclusive: error-rate: no traffic",
		"12:00:00  Progressing  step 4/7  weight 40%  v20261201114500  weight 40%",
		"12:00:00    analysis web-v20261201114500-step3-2 Running",
		"12:00:00  Healthy  step 7/7  weight 100%  v20261201114500  promoted",
		"12:00:00    analysis web-v20261201114500-step3-2 Successful: error-rate 0.01 <= 0.05",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("no line %q in\n%s", want, r.stdout)
		}
	}
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestExitCodes(t *testing.T) {
	srv := newTestAPI(t, nil)
	interrupted, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		args    []string
		noAuth  bool // args name the API and token themselves
		ctx     context.Context
		code    int
		wantErr string
	}{
		{name: "success", args: []string{"pipelines", "ls"}, code: ExitOK},
		{name: "help", args: []string{"pipelines", "logs", "--help"}, code: ExitOK},
		{name: "unknown command", args: []string{"frob"}, code: ExitUsage, wantErr: `unknown command "frob"`},
		{name: "unknown subcommand", args: []string{"rollout", "frob"}, code: ExitUsage, wantErr: `unknown command "frob" for "runway rollout"`},
		{name: "unknown flag", args: []string{"pipelines", "ls", "--frob"}, code: ExitUsage, wantErr: "unknown flag: --frob"},
		{name: "missing argument", args: []string{"pipelines", "get"}, code: ExitUsage, wantErr: "runway pipelines get takes ID"},
		{name: "extra argument", args: []string{"envs", "ls", "x"}, code: ExitUsage, wantErr: "takes no arguments"},
		{name: "unknown output format", args: []string{"pipelines", "ls", "-o", "xml"}, code: ExitUsage, wantErr: `-o "xml"`},
		{name: "limit out of range", args: []string{"pipelines", "ls", "--limit", "1000"}, code: ExitUsage, wantErr: "--limit must be"},
		{name: "pipeline not found", args: []string{"pipelines", "get", "nope"}, code: ExitNotFound, wantErr: "404 Not Found"},
		{name: "environment not found", args: []string{"envs", "get", "nope"}, code: ExitNotFound, wantErr: "404 Not Found"},
		{name: "rollout not found", args: []string{"rollout", "get", "nope"}, code: ExitNotFound, wantErr: "no rollout of nope in production"},
		{name: "analysis run not found", args: []string{"analysisruns", "get", "nope"}, code: ExitNotFound, wantErr: "404 Not Found"},
		{name: "step not found", args: []string{"pipelines", "logs", "web-3", "--step", "nope"}, code: ExitNotFound, wantErr: `no step "nope"`},
		{name: "refused token", args: []string{"pipelines", "ls", "--api", srv.URL, "--token", "wrong-token-0123456789"}, noAuth: true, code: ExitUnauthorized, wantErr: "refused the token"},
		{name: "unreachable", args: []string{"envs", "ls", "--api", "http://127.0.0.1:1", "--token", testToken}, noAuth: true, code: ExitUnreachable, wantErr: "calling Runway"},
		{name: "cancel of an ended pipeline", args: []string{"pipelines", "cancel", "web-2"}, code: ExitConflict, wantErr: "pipeline already ended"},
		{name: "promote of a rollout not paused", args: []string{"rollout", "promote", "api"}, code: ExitConflict, wantErr: "rollout not paused"},
		{name: "waited pipeline succeeded", args: []string{"pipelines", "get", "web-2", "--wait"}, code: ExitOK},
		{name: "waited pipeline failed", args: []string{"pipelines", "get", "api-7", "--wait"}, code: ExitUnsuccessful, wantErr: "pipeline api-7 ended Failed at staging-functional-tests"},
		{name: "followed logs of a failed pipeline", args: []string{"pipelines", "logs", "api-7", "-f"}, code: ExitUnsuccessful, wantErr: "ended Failed"},
		{name: "watched rollout aborted", args: []string{"rollout", "watch", "api"}, code: ExitUnsuccessful, wantErr: "ended Degraded"},
		{name: "interrupted", args: []string{"pipelines", "logs", "web-3", "-f"}, ctx: interrupted, code: ExitInterrupted},
		{name: "promote of a paused rollout", args: []string{"rollout", "promote", "web"}, code: ExitOK},
		{name: "cancel of a running pipeline", args: []string{"pipelines", "cancel", "web-3", "--reason", "wrong branch"}, code: ExitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			api := srv
			if tt.noAuth {
				api = nil
			}
			r := cliEnv{}.run(ctx, api, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d, %q", r.code, r.stderr, tt.code, tt.wantErr)
			}
		})
	}
}

func TestColor(t *testing.T) {
	srv := newTestAPI(t, nil)
	tests := []struct {
		name     string
		env      map[string]string
		terminal bool
		flags    []string
		color    bool
	}{
		{name: "terminal", terminal: true, color: true},
		{name: "not a terminal", terminal: false},
		{name: "NO_COLOR set", terminal: true, env: map[string]string{"NO_COLOR": "1"}},
		{name: "NO_COLOR set empty", terminal: true, env: map[string]string{"NO_COLOR": ""}},
		{name: "--no-color", terminal: true, flags: []string{"--no-color"}},
		{name: "dumb terminal", terminal: true, env: map[string]string{"TERM": "dumb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"pipelines", "ls"}, tt.flags...)
			r := cliEnv{env: tt.env, terminal: tt.terminal}.run(t.Context(), srv, args...)
			if r.code != 0 {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			if got := strings.Contains(r.stdout, "\x1b["); got != tt.color {
				t.Fatalf("coloured: %v, want %v:\n%s", got, tt.color, r.stdout)
			}
			// Colour never stands alone: the status is written out.
			for _, status := range []string{"Queued", "Running", "Failed", "Succeeded"} {
				if !strings.Contains(r.stdout, status) {
					t.Fatalf("no %s in\n%s", status, r.stdout)
				}
			}
		})
	}
	t.Run("columns stay aligned in colour", func(t *testing.T) {
		plain := cliEnv{}.run(t.Context(), srv, "pipelines", "ls").stdout
		colored := cliEnv{terminal: true}.run(t.Context(), srv, "pipelines", "ls").stdout
		for _, c := range []string{colorGreen, colorRed, colorBlue, colorYellow, colorDim, colorReset} {
			colored = strings.ReplaceAll(colored, c, "")
		}
		if colored != plain {
			t.Fatalf("without its colours the table is\n%s\nwant\n%s", colored, plain)
		}
	})
}
